"""Queue depth for telemetry (``lanewise_collect_state``), per gateway process.

``celery``: the length of each of the lane's Redis lists, read with a client of its
own with short timeouts (the collector runs on a telemetry thread, never on the event
loop); every gateway worker reads the same broker, so the values merge by ``max``.
``embedded``: the items this process's executor has not finished. The embedded stores
pin a gateway to one process, so ``max`` over processes is that one's count too.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from weakref import WeakKeyDictionary

from lanewise.core.factory import Components
from lanewise.core.types import StateSample

QUEUE_DEPTH = "lanewise_ingest_queue_depth"
HELP = "Ingest tasks waiting: per Celery queue (ingest, embed) or the embedded executor's items"
PROBE_TIMEOUT_S = 0.5
log = logging.getLogger("lanewise.ingest")


class QueueProbe:
    """What a gateway's ingest routes know about their queue, read from another thread."""

    def __init__(self, holder: Any) -> None:
        self.holder = holder
        self._client: Any = None
        self._closed = False
        self._lock = threading.Lock()

    def depths(self) -> dict[str, int]:
        from lanewise.ingest.celery_app import QUEUES, broker_url
        from lanewise.ingest.settings import ingest_settings

        settings = self.holder.settings
        ingest = ingest_settings(settings)
        if ingest.queue != "celery":
            service = self.holder.service
            return {"embedded": service.queue_depth() if service is not None else 0}
        with self._lock:
            if self._closed:
                return {}
            if self._client is None:
                import redis

                self._client = redis.Redis.from_url(
                    broker_url(settings, ingest),
                    socket_timeout=PROBE_TIMEOUT_S,
                    socket_connect_timeout=PROBE_TIMEOUT_S,
                )
            client = self._client
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(queue)
        return {q: int(n) for q, n in zip(QUEUES, pipe.execute(), strict=True)}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._client is not None:
                self._client.close()
                self._client = None


_probes: WeakKeyDictionary[Components, QueueProbe] = WeakKeyDictionary()


def watch(components: Components, probe: QueueProbe) -> None:
    _probes[components] = probe


def queue_state(components: Components) -> list[StateSample]:
    probe = _probes.get(components)
    if probe is None:
        return []
    try:
        depths = probe.depths()
    except Exception as exc:  # the broker is down: no value beats a wrong one
        log.debug("ingest queue depth unavailable: %s", exc)
        return []
    return [
        StateSample(name=QUEUE_DEPTH, value=float(n), labels={"queue": q}, help=HELP, merge="max")
        for q, n in depths.items()
    ]
