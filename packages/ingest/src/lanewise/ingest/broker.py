# kombu's Redis channel has no annotations: calling its methods is an untyped call.
# mypy: disable-error-code="no-untyped-call"
"""kombu's Redis transport, made to survive a broker restart without stopping the worker.

When Redis goes away, Celery's consumer cleans up the dead connection twice:
``connection.collect()`` (which closes the channels, then detaches the transport from
its connection) and ``connection.close()``, ignoring connection errors only. kombu
5.7's Redis channel stops closing half-way when the broker is unreachable: at the reply
of a BRPOP still in flight, or at deleting an auto-delete fanout queue (Celery's
remote-control queue, on the other channel, whose error also ends the transport's
close of every channel). The second pass then finishes the close, and putting the
unacknowledged messages back needs a new connection pool, built from the transport's
connection, which is gone by then: ``AttributeError`` on ``None.hostname``, which
Celery reports as an unrecoverable error, and the worker stops consuming for good
(one broker restart in ten in the ingest tests, when a task was running and the next
BRPOP was in flight).

Here a channel closes completely in its first pass whatever the broker's state, and
a channel that still needs Redis after its transport was detached gets a connection
error (which Celery ignores and recovers from) instead of the ``AttributeError``.

Two more losses of kombu's at a broker restart are repaired here. A message that
BRPOP took off its queue just before the connection broke, whose unacknowledged copy
could not be written, existed only in this process: it would never be delivered
again. And the unacknowledged messages of the tasks Celery cancels on a connection
loss could not be put back while Redis was down, so they waited for the visibility
timeout (an hour by default). This process keeps both (:class:`Stranded`) and puts
them back on their queues as soon as it consumes again. Putting back an
unacknowledged message is atomic (it moves from the unacked set to its queue, once);
a message whose unacknowledged copy was written after all (only the reply was lost)
runs twice, which the idempotent tasks make harmless. What is still lost is a message
Redis took off a queue for a BRPOP as it shut down, whose reply never reached this
process: the job's stall recovery sends its item again (sooner after a restart, see
:meth:`lanewise.ingest.state.IngestState.stalled_items`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from queue import Empty
from typing import Any

import redis.exceptions
from kombu.transport import redis as kombu_redis

TRANSPORT = "lanewise.ingest.broker:Transport"
SCHEMES = ("redis", "rediss")

log = logging.getLogger("lanewise.ingest.worker")


class Stranded:
    """Deliveries a broken connection left with this process, to put back on reconnect."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tags: list[str] = []  # recorded as unacknowledged; restore by tag
        self.messages: list[tuple[Any, str, str]] = []  # never recorded: (raw, exchange, key)

    def add(
        self, *, tags: Sequence[str] = (), messages: Sequence[tuple[Any, str, str]] = ()
    ) -> None:
        with self._lock:
            self.tags.extend(tags)
            self.messages.extend(messages)

    def take(self) -> tuple[list[str], list[tuple[Any, str, str]]]:
        with self._lock:
            tags, messages = self.tags, self.messages
            self.tags, self.messages = [], []
            return tags, messages


STRANDED = Stranded()


class QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        try:
            super().append(message, delivery_tag)
        except self.channel.connection_errors:
            # Off its queue and not in the unacked set: only this process has it now.
            info = message.delivery_info
            STRANDED.add(messages=[(message._raw, info["exchange"], info["routing_key"])])
            raise

    def restore_unacked(self, client: Any = None) -> None:
        tags = list(self._delivered)
        try:
            super().restore_unacked(client)
        except self.channel.connection_errors:
            STRANDED.add(tags=tags)  # restoring one already restored does nothing
            raise


class Channel(kombu_redis.Channel):
    QoS = QoS

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        consumer = super().basic_consume(queue, *args, **kwargs)
        self.restore_stranded()
        return consumer

    def restore_stranded(self) -> None:
        """Put back on their queues what a broken connection left with this process."""
        tags, messages = STRANDED.take()
        if not (tags or messages):
            return
        count = len(tags) + len(messages)
        try:
            with self.conn_or_acquire() as client:
                while tags:
                    self.qos.restore_by_tag(tags[-1], client)
                    tags.pop()
                while messages:
                    raw, exchange, routing_key = messages[-1]
                    with client.pipeline() as pipe:
                        self._do_restore_message(raw, exchange, routing_key, pipe)
                        pipe.execute()
                    messages.pop()
        except self.connection_errors:
            STRANDED.add(tags=tags, messages=messages)  # the next consume tries again
            return
        log.info("put back %d task message(s) the broken broker connection left here", count)

    def close(self) -> None:
        if self._in_poll:
            # The reply of the BRPOP in flight, if it came: a message it carries that
            # cannot be recorded as unacknowledged is kept (QoS.append).
            try:
                self._brpop_read()
            except (Empty, *self.connection_errors):
                pass
        try:
            super().close()
        except self.connection_errors:
            if self.closed:
                raise  # closed; its unacknowledged messages are kept (QoS.restore_unacked)
            # Deleting auto-delete fanout queues needs the broker; close without it.
            self.auto_delete_queues.clear()
            super().close()

    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        """One client per connection pool: kombu builds a new ``redis.Redis`` (and its table
        of ~170 response callbacks) for every publish, acknowledgement and unacked record,
        0.15 ms each; a client takes a connection from its pool per command anyway."""
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool  # a new one after the connection was lost: so is the client
        if self._sync_client is None or self._sync_client.connection_pool is not pool:
            self._sync_client = super()._create_client()
        return self._sync_client

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError(
                "the broker connection was closed after a connection loss"
            )
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(url: str) -> str | None:
    """This transport for a Redis broker URL; None (kombu's choice) for anything else."""
    scheme = url.split(";", 1)[0].split("://", 1)[0].lower()
    return TRANSPORT if scheme in SCHEMES else None
