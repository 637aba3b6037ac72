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
Nothing is lost either way: an unacknowledged message that cannot be put back stays in
Redis's unacked set and is redelivered after the visibility timeout.
"""

from __future__ import annotations

from queue import Empty
from typing import Any

import redis.exceptions
from kombu.transport import redis as kombu_redis

TRANSPORT = "lanewise.ingest.broker:Transport"
SCHEMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):
    def close(self) -> None:
        if self._in_poll:
            # The reply of the BRPOP in flight: lost with the connection if the broker
            # is gone (a message it popped was never recorded as unacknowledged).
            try:
                self._brpop_read()
            except (Empty, *self.connection_errors):
                pass
        try:
            super().close()
        except self.connection_errors:
            if self.closed:
                raise  # the channel is closed; its unacked messages wait for the sweep
            # Deleting auto-delete fanout queues needs the broker; close without it.
            self.auto_delete_queues.clear()
            super().close()

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
