"""Celery workers: the same structured logs, task metrics, and their own ``/metrics``.

Wired from ``lanewise_configure_celery`` (the ingest lane calls it when it builds
its Celery app). Signals are connected weakly by Celery, so the receivers are
module-level functions that read the settings captured at configuration.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Any

from lanewise.observe import metrics as m
from lanewise.observe.logs import configure_logging, flush_logging
from lanewise.observe.settings import ObserveSettings

log = logging.getLogger("lanewise.observe")
_settings: ObserveSettings | None = None
_started: dict[str, float] = {}
_own_dir: str | None = None
MAX_IN_FLIGHT = 10_000


def _drop() -> None:
    m.TELEMETRY_DROPPED.labels("logs").inc()


def _setup_logging(**_: Any) -> None:
    # Connecting to setup_logging stops Celery from installing its own handlers.
    if _settings is not None:
        configure_logging(_settings, on_drop=_drop)


def _flush_logs(**_: Any) -> None:
    """``worker_process_shutdown``: a pool child leaves through ``os._exit`` (no atexit),
    so the lines its writer thread has not written yet would be lost."""
    flush_logging(timeout=2.0)


def _task_prerun(task_id: str = "", **_: Any) -> None:
    if len(_started) < MAX_IN_FLIGHT:
        _started[task_id] = time.perf_counter()


def _task_postrun(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    name = getattr(task, "name", "unknown")
    started = _started.pop(task_id, None)
    if started is not None:
        m.CELERY_TASK_SECONDS.labels(name).observe(time.perf_counter() - started)
    m.CELERY_TASKS.labels(name, (state or "unknown").lower()).inc()


def _worker_init(**_: Any) -> None:
    """In the worker's main process, before its pool forks: share one metrics directory.

    Prefork children run the tasks and count them; the main process serves ``/metrics``.
    Without ``PROMETHEUS_MULTIPROC_DIR`` each child would count in its own memory and the
    endpoint would show none of it, so the worker makes a directory (removed at
    shutdown), as ``lanewise serve --workers N`` does. prometheus-client chose its value
    class when it was imported, before this command ran: choose again, so the children's
    counters (created on first use, after the fork) write to the shared files.
    """
    global _own_dir
    if _settings is None or _settings.worker_metrics_port is None or m.multiprocess_dir():
        return
    from prometheus_client import values

    _own_dir = tempfile.mkdtemp(prefix="lanewise-worker-metrics-")
    os.environ[m.MULTIPROC_ENV] = _own_dir
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def _worker_shutdown(**_: Any) -> None:
    if _own_dir is not None:
        shutil.rmtree(_own_dir, ignore_errors=True)


def _worker_ready(**_: Any) -> None:
    if _settings is None or _settings.worker_metrics_port is None:
        return
    from prometheus_client import CollectorRegistry, start_http_server

    registry = None
    if m.multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(_settings.worker_metrics_port, registry=registry or m.REGISTRY)
    log.info("worker metrics on :%d/metrics", _settings.worker_metrics_port)


def instrument_celery(celery_app: Any, settings: ObserveSettings) -> None:
    from celery import signals  # type: ignore[import-untyped,unused-ignore]

    global _settings
    _settings = settings
    signals.setup_logging.connect(_setup_logging, weak=False)
    # Prefork children do not inherit the log writer thread: start one in each.
    signals.worker_process_init.connect(_setup_logging, weak=False)
    signals.worker_process_shutdown.connect(_flush_logs, weak=False)
    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)
    signals.worker_init.connect(_worker_init, weak=False)
    signals.worker_shutdown.connect(_worker_shutdown, weak=False)
    signals.worker_ready.connect(_worker_ready, weak=False)
