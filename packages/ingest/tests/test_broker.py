"""The Redis transport the workers use survives a broker restart (real Redis, real kombu).

The situation of the worker that stopped for good after a Redis restart: a task
running (its message delivered, not acknowledged), the next BRPOP in flight, and a
second channel on an auto-delete fanout queue (Celery's remote control). Redis
goes down; Celery's consumer then cleans up exactly as below, and Redis comes back.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Queue
from kombu.common import ignore_errors
from lanewise.ingest.broker import TRANSPORT, transport_for

OPTIONS = {"visibility_timeout": 3, "unacked_restore_throttle": 1}


def held_task(url: str, transport: str | None) -> tuple[Connection, list[Any]]:
    """A consumer holding one unacknowledged message, its next BRPOP in flight."""
    conn = Connection(url, transport=transport, transport_options=OPTIONS)
    queue = Queue("embed", Exchange("embed", "direct"), "embed")
    held: list[Any] = []
    Consumer(conn.default_channel, [queue], callbacks=[lambda _, m: held.append(m)]).consume()
    box = Queue("w1.pidbox", Exchange("w1.pidbox", "fanout"), auto_delete=True)
    Consumer(conn.channel(), [box], callbacks=[lambda *_: None]).consume()
    conn.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key="embed", declare=[queue])
    deadline = time.monotonic() + 10
    idle = False  # until the message is held and a BRPOP sent after it found nothing
    while not (held and idle) and time.monotonic() < deadline:
        try:
            conn.drain_events(timeout=0.2)
            idle = False
        except TimeoutError:
            idle = True
    assert held and conn.default_channel._in_poll  # that BRPOP is still in flight
    return conn, held


def celery_cleanup(conn: Connection) -> None:
    """What celery's ``Consumer.on_connection_error_after_connected`` does with it."""
    try:
        conn.collect(socket_timeout=1)
    except Exception:  # celery ignores anything here
        pass
    ignore_errors(conn, conn.close)  # only connection errors are ignored


def test_the_worker_cleanup_survives_a_broker_restart_and_the_task_comes_back(
    redis_server: Any,
) -> None:
    # kombu's own transport: the cleanup dies (Celery: "Unrecoverable error", the worker
    # stops consuming); if this starts passing, kombu fixed it and broker.py can go.
    conn, _ = held_task(redis_server.url, None)
    redis_server.stop()
    with pytest.raises(AttributeError, match="hostname"):
        celery_cleanup(conn)
    redis_server.start()

    conn, held = held_task(redis_server.url, TRANSPORT)
    body = held[0].body
    conn.default_channel.client.config_set("save", "3600 1")  # Redis dumps on SIGTERM
    redis_server.stop()  # the worker notices while Redis is still down
    celery_cleanup(conn)  # no exception
    redis_server.start()
    # Nothing lost: the unacknowledged message comes back after the visibility timeout.
    again = Connection(redis_server.url, transport=TRANSPORT, transport_options=OPTIONS)
    got: list[Any] = []
    queue = Queue("embed", Exchange("embed", "direct"), "embed")
    with Consumer(again, [queue], callbacks=[lambda _, m: got.append(m)]):
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            try:
                again.drain_events(timeout=0.5)
            except TimeoutError:
                pass
    assert [m.body for m in got] == [body]
    again.release()


def test_only_redis_urls_get_the_fixed_transport() -> None:
    assert transport_for("redis://127.0.0.1:6379/0") == TRANSPORT
    assert transport_for("rediss://cache:6380/1?ssl_cert_reqs=required") == TRANSPORT
    assert transport_for("REDIS://h;redis://other") == TRANSPORT
    assert transport_for("sentinel://h:26379") is None
    assert transport_for("amqp://guest@rabbit//") is None
