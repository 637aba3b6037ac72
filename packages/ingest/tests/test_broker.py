"""The Redis transport the workers use survives a broker restart (real Redis, real kombu).

The situation of the worker that stopped for good after a Redis restart: a task
running (its message delivered, not acknowledged), the next BRPOP in flight, and a
second channel on an auto-delete fanout queue (Celery's remote control). Redis
goes down; Celery's consumer then cleans up exactly as below, and Redis comes back.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Queue
from kombu.common import ignore_errors
from lanewise.ingest.broker import STRANDED, TRANSPORT, transport_for

QUEUE = Queue("embed", Exchange("embed", "direct"), "embed")
# Long enough that only an immediate put-back can explain a prompt redelivery.
HOUR = {"visibility_timeout": 3600}


def held_task(url: str, transport: str | None) -> tuple[Connection, list[Any]]:
    """A consumer holding one unacknowledged message, its next BRPOP in flight."""
    conn = Connection(url, transport=transport, transport_options=HOUR)
    held: list[Any] = []
    Consumer(conn.default_channel, [QUEUE], callbacks=[lambda _, m: held.append(m)]).consume()
    box = Queue("w1.pidbox", Exchange("w1.pidbox", "fanout"), auto_delete=True)
    Consumer(conn.channel(), [box], callbacks=[lambda *_: None]).consume()
    conn.Producer().publish({"n": 1}, exchange=QUEUE.exchange, routing_key="embed", declare=[QUEUE])
    deadline = time.monotonic() + 10
    idle = False  # until the message is held and a BRPOP sent after it found nothing
    while not (held and idle) and time.monotonic() < deadline:
        try:
            conn.drain_events(timeout=0.2)
            idle = False
        except TimeoutError:
            idle = True
    assert held
    assert conn.default_channel._in_poll  # that BRPOP is still in flight
    return conn, held


def celery_cleanup(conn: Connection) -> None:
    """What celery's ``Consumer.on_connection_error_after_connected`` does with it."""
    with contextlib.suppress(Exception):  # celery ignores anything here
        conn.collect(socket_timeout=1)
    ignore_errors(conn, conn.close)  # only connection errors are ignored


def delivered_again(url: str, within_s: float = 10) -> list[Any]:
    """Bodies a fresh consumer (the reconnected worker) gets from the queue."""
    again = Connection(url, transport=TRANSPORT, transport_options=HOUR)
    got: list[Any] = []
    with Consumer(again, [QUEUE], callbacks=[lambda _, m: got.append(m)]):
        deadline = time.monotonic() + within_s
        while not got and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                again.drain_events(timeout=0.5)
    for message in got:
        message.ack()
    again.release()
    return [m.payload for m in got]


def test_the_worker_cleanup_survives_a_broker_restart_and_the_task_comes_back_at_once(
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
    body = held[0].payload
    conn.default_channel.client.config_set("save", "3600 1")  # Redis dumps on SIGTERM
    redis_server.stop()  # the worker notices while Redis is still down
    celery_cleanup(conn)  # no exception
    redis_server.start()
    # Nothing lost, and not an hour late: the reconnected consumer puts it back itself.
    assert delivered_again(redis_server.url) == [body]
    assert STRANDED.take() == ([], [])


def test_a_message_taken_off_its_queue_as_redis_went_down_is_not_lost(
    redis_server: Any,
) -> None:
    conn = Connection(redis_server.url, transport=TRANSPORT, transport_options=HOUR)
    channel = conn.default_channel
    conn.Producer().publish({"n": 2}, exchange=QUEUE.exchange, routing_key="embed", declare=[QUEUE])
    # The moment between BRPOP's reply and recording the message as unacknowledged.
    raw = redis.Redis.from_url(redis_server.url).rpop("embed")
    message = channel.Message(json.loads(raw), channel=channel)
    redis_server.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        channel.qos.append(message, message.delivery_tag)
    ignore_errors(conn, conn.release)
    redis_server.start()
    assert delivered_again(redis_server.url) == [{"n": 2}]
    assert STRANDED.take() == ([], [])


def test_only_redis_urls_get_the_fixed_transport() -> None:
    assert transport_for("redis://127.0.0.1:6379/0") == TRANSPORT
    assert transport_for("rediss://cache:6380/1?ssl_cert_reqs=required") == TRANSPORT
    assert transport_for("REDIS://h;redis://other") == TRANSPORT
    assert transport_for("sentinel://h:26379") is None
    assert transport_for("amqp://guest@rabbit//") is None
