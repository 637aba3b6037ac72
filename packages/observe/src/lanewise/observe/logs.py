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
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import msgspec
import structlog
from lanewise.core.context import current_request
from lanewise.observe.logwriter import LineWriter
from lanewise.observe.record import RECORD
from lanewise.observe.settings import ObserveSettings

THIRD_PARTY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")
QUIET_LOGGERS = ("httpx", "httpcore", "alembic", "aiohttp.access")
"""Loggers that log every call at INFO: on the hot path, so WARNING unless debugging."""
CONTEXT_KEYS = ("request_id", "trace_id", "tenant", "user", "key_id", "workflow", "model")

_installed: tuple[WriterHandler, LineWriter, bool] | None = None
"""The root handler, its writer, and whether lines are JSON."""
_atexit_registered = False


def add_request_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add the running request's ids (request, trace, tenant, user, ...) to a log line."""
    context = current_request()
    if context is None or "tenant" in event_dict:
        return event_dict
    entry = context.attributes.get(RECORD)
    if entry is None:  # not an observed (/v1) request
        return event_dict
    principal = context.principal
    values = (
        context.request_id,
        entry[1].trace_id,
        principal.tenant if principal else None,
        principal.user if principal else None,
        principal.key_id if principal else None,
        principal.workflow if principal else None,
        context.model,
    )
    for key, value in zip(CONTEXT_KEYS, values, strict=True):
        if value is not None:
            event_dict.setdefault(key, value)
    if context.prompt_name is not None:
        event_dict.setdefault("prompt_template", context.prompt_name)
        event_dict.setdefault("prompt_version", context.prompt_version)
    if context.index_version is not None:
        event_dict.setdefault("index_version", context.index_version)
    return event_dict


def add_pid(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Which worker process wrote the line (``lanewise serve --workers N``)."""
    event_dict["pid"] = _PID
    return event_dict


def _json(obj: Any, **_: Any) -> str:
    return msgspec.json.encode(obj, enc_hook=str).decode()


class WriterHandler(logging.Handler):
    """Render a stdlib record with structlog's processors, hand the line to the writer."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.writer.put(line)


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
    shutdown_logging()
    writer = LineWriter(settings.log_file, settings.log_buffer, on_drop)
    handler = WriterHandler(writer)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    route_third_party_loggers()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    _installed = (handler, writer, not wants_console(settings))
    global _atexit_registered
    if not _atexit_registered:
        # The writer thread is a daemon: flush what is queued when the process exits.
        atexit.register(shutdown_logging)
        _atexit_registered = True


_feeders: list[Callable[[], object]] = []
"""What renders lines off the request path (the telemetry worker): run before a flush."""


def add_feeder(feeder: Callable[[], object]) -> None:
    _feeders.append(feeder)


def remove_feeder(feeder: Callable[[], object]) -> None:
    if feeder in _feeders:
        _feeders.remove(feeder)


def flush_logging(timeout: float = 10.0) -> bool:
    """Wait until every queued line was written (tests; a stuck sink returns False)."""
    for feed in list(_feeders):
        feed()
    if _installed is None:
        return True
    return _installed[1].flush(timeout)


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
    handler, writer, _ = _installed
    _installed = None
    logging.getLogger().removeHandler(handler)
    writer.close()


def write_synchronously() -> None:
    """From now on log lines are written by their caller (the server is shutting down)."""
    if _installed is not None:
        _installed[1].go_synchronous()


def json_line_writer() -> LineWriter | None:
    """The writer, when lines are JSON: the request path renders summaries itself."""
    if _installed is None or not _installed[2]:
        return None
    return _installed[1]


def emit_json_line(
    writer: LineWriter, event: str, level: str, logger: str, fields: dict[str, Any]
) -> None:
    """One JSON line without the stdlib/structlog machinery (the per-request summary).

    The same keys as structlog's JSON lines: ``event``, ``pid``, ``level``,
    ``logger``, ``timestamp`` (ISO 8601, UTC).
    """
    fields["event"] = event
    fields["pid"] = _PID
    fields["level"] = level
    fields["logger"] = logger
    fields["timestamp"] = iso_now()
    writer.put(_ENCODER.encode(fields).decode())


_second: tuple[int, str] = (0, "")


def iso_now() -> str:
    """``2026-01-02T03:04:05.123456Z``; the seconds part is formatted once per second."""
    global _second
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1e6):06d}Z"


_ENCODER = msgspec.json.Encoder(enc_hook=str)
_PID = os.getpid()


def _refresh_pid() -> None:
    global _PID
    _PID = os.getpid()


def write_as(pid: int) -> None:
    """Lines say ``pid`` from now on (the sidecar writes for its gateway worker)."""
    global _PID
    _PID = pid


os.register_at_fork(after_in_child=_refresh_pid)
