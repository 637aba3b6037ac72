"""structlog for the whole process: lanewise's loggers, stdlib, uvicorn and Celery alike.

Every record goes through the same processors (request context, level,
timestamp) and one renderer: JSON lines in production, a readable console
renderer in development (``observe.log_format``; a TTY picks console). Lines
are rendered on the caller's thread and written by a background thread from a
bounded queue, so a slow or broken log sink drops lines (counted) instead of
stalling requests.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import time
from collections.abc import Callable, MutableMapping
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import msgspec
import structlog
from lanewise.observe.record import CURRENT
from lanewise.observe.settings import ObserveSettings

THIRD_PARTY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")
QUIET_LOGGERS = ("httpx", "httpcore", "alembic", "aiohttp.access")
"""Loggers that log every call at INFO: on the hot path, so WARNING unless debugging."""
CONTEXT_KEYS = ("request_id", "trace_id", "tenant", "user", "key_id", "workflow", "model")

_installed: tuple[BoundedQueueHandler, QueueListener] | None = None
_atexit_registered = False


def add_request_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add the running request's ids (request, trace, tenant, user, ...) to a log line."""
    record = CURRENT.get()
    if record is None or "tenant" in event_dict:
        return event_dict
    principal = record.caller()
    values = (
        record.request_id,
        record.trace_id,
        principal.tenant if principal else None,
        principal.user if principal else None,
        principal.key_id if principal else None,
        principal.workflow if principal else None,
        record.model,
    )
    for key, value in zip(CONTEXT_KEYS, values, strict=True):
        if value is not None:
            event_dict.setdefault(key, value)
    if record.prompt_name is not None:
        event_dict.setdefault("prompt_template", record.prompt_name)
        event_dict.setdefault("prompt_version", record.prompt_version)
    if record.index_version is not None:
        event_dict.setdefault("index_version", record.index_version)
    return event_dict


def add_pid(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Which worker process wrote the line (``lanewise serve --workers N``)."""
    event_dict["pid"] = os.getpid()
    return event_dict


def _json(obj: Any, **_: Any) -> str:
    return msgspec.json.encode(obj, enc_hook=str).decode()


class BoundedQueueHandler(QueueHandler):
    """Render on the caller's thread, then hand off without ever blocking."""

    def __init__(self, q: queue.Queue[Any], on_drop: Callable[[], None]) -> None:
        super().__init__(q)
        self.on_drop = on_drop

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.on_drop()


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Write to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def wants_console(settings: ObserveSettings) -> bool:
    if settings.log_format != "auto":
        return settings.log_format == "console"
    return settings.log_file is None and sys.stderr.isatty()


def configure_logging(settings: ObserveSettings, on_drop: Callable[[], None]) -> None:
    """(Re)configure the process's logging; safe to call again (tests, forked workers)."""
    global _installed
    level = getattr(logging, settings.log_level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_request_context,
        add_pid,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=settings.log_file is None and sys.stderr.isatty())
        if wants_console(settings)
        else structlog.processors.JSONRenderer(serializer=_json)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    sink: logging.Handler = (
        logging.FileHandler(settings.log_file, encoding="utf-8")
        if settings.log_file is not None
        else StderrHandler()
    )
    sink.setFormatter(logging.Formatter("%(message)s"))
    q: queue.Queue[Any] = queue.Queue(maxsize=settings.log_buffer)
    handler = BoundedQueueHandler(q, on_drop)
    handler.setFormatter(formatter)
    listener = QueueListener(q, sink, respect_handler_level=False)
    root = logging.getLogger()
    shutdown_logging()
    root.addHandler(handler)
    root.setLevel(level)
    route_third_party_loggers()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    listener.start()
    _installed = (handler, listener)
    global _atexit_registered
    if not _atexit_registered:
        # The writer thread is a daemon: flush what is queued when the process exits.
        atexit.register(shutdown_logging)
        _atexit_registered = True


def flush_logging(timeout: float = 10.0) -> bool:
    """Wait until every queued line was written (tests; a stuck sink returns False)."""
    if _installed is None:
        return True
    q = _installed[0].queue
    deadline = time.monotonic() + timeout
    while getattr(q, "unfinished_tasks", 0):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def route_third_party_loggers() -> None:
    """Send uvicorn's and Celery's loggers to the root handler (they install their own).

    Called again when the gateway starts serving: uvicorn configures its loggers
    when its server starts, which may be after the app was built.
    """
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def shutdown_logging() -> None:
    """Flush and remove what :func:`configure_logging` installed (others' handlers stay)."""
    global _installed
    if _installed is None:
        return
    handler, listener = _installed
    _installed = None
    logging.getLogger().removeHandler(handler)
    listener.stop()
    for sink in listener.handlers:
        sink.close()
