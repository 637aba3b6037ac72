"""The ingest lane's Celery app: queues per resource profile on Redis.

``parse`` tasks (memory-bound: loaders, chunking) go to the ``ingest``
queue, ``embed`` tasks (accelerator-bound) to ``embed``, so each queue gets
workers sized for its profile. Delivery is at-least-once and the tasks are
idempotent (see :mod:`lanewise.ingest.pipeline`):

* ``acks_late`` + ``task_reject_on_worker_lost``: a task whose worker dies
  (SIGKILL, OOM) is redelivered instead of lost;
* Redis redelivers an unacknowledged task after ``visibility_timeout`` (a
  worker SIGKILLed whole, main process included); it is checked at start to be
  at least twice the task time limit, or a long task would be redelivered
  while it still runs, over and over (celery#5508);
* transient errors are retried with exponential backoff and full jitter, up
  to ``max_retries``, inside the task; anything else fails its document with
  a reason, and the task still succeeds (a poison document never loops);
* ``worker_max_memory_per_child`` / ``worker_max_tasks_per_child`` recycle a
  child that grew, and each child builds its own components after the fork
  (``worker_process_init``): no connection, file or thread crosses a fork;
* the broker connection is retried forever, so workers resume consuming by
  themselves after Redis restarts; the Redis transport is kombu's with the
  channel close fixed (:mod:`lanewise.ingest.broker`), without which one
  restart in ten left the worker stopped on an "unrecoverable error".
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from lanewise.core.errors import ConfigError
from lanewise.core.settings import Settings, load_settings
from lanewise.ingest.broker import transport_for
from lanewise.ingest.pipeline import (
    IngestRuntime,
    Payload,
    embed_inline,
    only_batch,
    run_embed,
    run_parse,
)
from lanewise.ingest.settings import IngestSettings, ingest_settings

log = logging.getLogger("lanewise.ingest.worker")

PARSE_TASK = "lanewise.ingest.parse"
EMBED_TASK = "lanewise.ingest.embed"
PING_TASK = "lanewise.ingest.ping"
QUEUES = ("ingest", "embed")


def broker_url(settings: Settings, ingest: IngestSettings) -> str:
    url = ingest.broker_url or settings.redis_url
    if not url:
        raise ConfigError(
            'ingest.queue = "celery" needs a broker: set redis_url (or ingest.broker_url) '
            'to a Redis URL, or use ingest.queue = "embedded"'
        )
    return url


def check_visibility_timeout(ingest: IngestSettings) -> None:
    if ingest.visibility_timeout_s < 2 * ingest.task_time_limit_s:
        raise ConfigError(
            f"ingest.visibility_timeout_s = {ingest.visibility_timeout_s:g} is less than twice "
            f"ingest.task_time_limit_s = {ingest.task_time_limit_s:g}: Redis would redeliver a "
            "task that is still running (celery#5508); raise the visibility timeout to at least "
            f"{2 * ingest.task_time_limit_s:g} or lower the time limit"
        )


def transport_options(ingest: IngestSettings) -> dict[str, Any]:
    """Redis transport options: abandoned tasks come back soon after the visibility timeout.

    kombu sweeps the unacknowledged set only every ``unacked_restore_interval`` x
    ``unacked_restore_throttle`` seconds (100 s by default) and a worker killed while
    sweeping holds the sweep's lock for ``unacked_mutex_expire`` (300 s); a task of a
    worker that was SIGKILLed whole would wait that long on top of the visibility timeout.
    """
    interval = max(1.0, min(10.0, ingest.visibility_timeout_s / 10))
    return {
        "visibility_timeout": ingest.visibility_timeout_s,
        "unacked_restore_interval": interval,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": max(30, int(3 * interval)),
    }


def create_celery_app(settings: Settings, plugin_manager: Any = None) -> Any:
    """The Celery app for ``settings``; plugins adjust it through ``lanewise_configure_celery``."""
    from celery import Celery

    ingest = ingest_settings(settings)
    check_visibility_timeout(ingest)
    url = broker_url(settings, ingest)
    app = Celery("lanewise", broker=url, set_as_current=False)
    app.conf.update(
        broker_transport=transport_for(url),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=ingest.task_time_limit_s,
        task_soft_time_limit=ingest.task_time_limit_s * 0.9,
        broker_transport_options=transport_options(ingest),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_routes={PARSE_TASK: {"queue": "ingest"}, EMBED_TASK: {"queue": "embed"}},
        task_default_queue="ingest",
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        worker_max_memory_per_child=ingest.worker_max_memory_mb * 1024,  # KiB
        worker_max_tasks_per_child=ingest.worker_max_tasks_per_child,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    _register_tasks(app)
    if plugin_manager is not None:
        plugin_manager.hook.lanewise_configure_celery(celery_app=app, settings=settings)
    return app


def _parse_task(task: Any, item: Payload) -> None:
    here = worker()
    with task.app.producer_or_acquire() as producer:  # one for all of the item's batches
        dispatch = CeleryDispatch(task.app, producer, here.runtime if here.inline else None)
        here.run(run_parse(here.runtime, item, dispatch))


def _embed_task(task: Any, payload: Payload) -> None:
    here = worker()
    here.run(run_embed(here.runtime, payload))


def _ping_task(task: Any, counter: str | None = None, payload: Any = None) -> None:
    """Does nothing (but count itself in ``counter``): the benchmark's Celery baseline.

    ``payload`` is carried and ignored: the baseline moves the pipeline's own messages."""
    if counter is not None:
        worker().runtime.state.kv.incr(counter)


def _register_tasks(app: Any) -> None:
    # Retries happen inside the task (run_parse/run_embed), not through Celery's retry:
    # the message stays unacknowledged meanwhile, so a retry needs no broker (it may be
    # the thing that is down) and a worker that dies mid-backoff still gets it redelivered.
    # Module-level functions: every app this process creates registers the same callables.
    for name, func in (
        (PARSE_TASK, _parse_task),
        (EMBED_TASK, _embed_task),
        (PING_TASK, _ping_task),
    ):
        app.task(name=name, bind=True)(func)


def send(app: Any, task: str, payload: Payload, queue: str, producer: Any = None) -> None:
    """Send one task. Its arguments show in logs and events as a short summary: Celery
    would build a truncated repr of the whole payload (an embed batch's texts and
    metadata), about 0.3 ms of a 0.7 ms publish."""
    summary = (
        f"({payload.get('name', '')!r}, batch {payload['batch']})"
        if "batch" in payload
        else f"({payload.get('name', '')!r})"
    )
    app.send_task(
        task, args=[payload], queue=queue, producer=producer, argsrepr=summary, kwargsrepr="{}"
    )


class CeleryDispatch:
    """Embed batches go onto the ``embed`` queue; with ``inline`` (a worker that consumes
    that queue too), a document's only batch is embedded right here, in its parse task:
    no message to publish and no second task to dispatch, on the same worker that would
    have taken it. A document of several batches still spreads them over the pool."""

    def __init__(self, app: Any, producer: Any = None, inline: IngestRuntime | None = None):
        self.app = app
        self.producer = producer
        self.inline = inline

    async def embed(self, payload: Payload) -> None:
        if self.inline is not None and only_batch(payload):
            await embed_inline(self.inline, payload)
            return
        send(self.app, EMBED_TASK, payload, "embed", self.producer)


@dataclass
class WorkerProcess:
    """What one worker child builds after the fork: components, job state, an event loop."""

    runtime: IngestRuntime
    loop: asyncio.AbstractEventLoop
    closer: Any
    inline: bool = False
    """Embed a document's only batch inside its parse task (see :class:`CeleryDispatch`)."""

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


_worker: WorkerProcess | None = None
_lock = threading.Lock()
_consumed: frozenset[str] = frozenset()
"""The queues this worker consumes (set by ``lanewise worker`` before the pool forks)."""


def consume(queues: list[str]) -> None:
    global _consumed
    _consumed = frozenset(queues)


def worker() -> WorkerProcess:
    """This process's components, built on first use (``worker_process_init`` builds early)."""
    global _worker
    with _lock:
        if _worker is None:
            _worker = _build_worker()
        return _worker


def _build_worker() -> WorkerProcess:
    from lanewise.ingest.service import open_runtime

    settings = load_settings(os.environ.get("LANEWISE_CONFIG") or None)
    loop = asyncio.new_event_loop()
    runtime, closer = open_runtime(settings, queue="celery")
    runtime.offload = False  # this loop runs one task at a time: nothing to keep responsive
    inline = runtime.settings.inline_embed and "embed" in _consumed
    return WorkerProcess(runtime=runtime, loop=loop, closer=closer, inline=inline)


def init_worker_process(**_: Any) -> None:
    """``worker_process_init``: build this child's components now, not inside its first task."""
    global _worker
    _worker = None  # never reuse what a parent built before the fork
    worker()


def shutdown_worker_process(**_: Any) -> None:
    global _worker
    if _worker is not None:
        try:
            _worker.run(_worker.closer())
        finally:
            _worker.loop.close()
            _worker = None
