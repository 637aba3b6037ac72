"""Why an item failed, and whether trying again could help.

A :class:`PoisonItem` fails alone and for good (a corrupt PDF, an unsupported
format, a guard's refusal): it gets a dead-letter record with its reason and
the rest of the job continues. Anything :func:`is_transient` accepts (a broker
or store that is briefly away) is retried with backoff and jitter.
"""

from __future__ import annotations

from lanewise.core.errors import LanewiseError, Unavailable, UpstreamError, UpstreamTimeout


class PoisonItem(Exception):
    """An item that can never succeed as it is; ``reason`` says what to fix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedFormat(PoisonItem):
    pass


class CorruptDocument(PoisonItem):
    pass


_TRANSIENT_LANEWISE = (Unavailable, UpstreamTimeout, UpstreamError)


def is_transient(exc: BaseException) -> bool:
    """True for failures that a later attempt may not meet (network, timeouts, 503s)."""
    if isinstance(exc, PoisonItem):
        return False
    if isinstance(exc, LanewiseError):
        return isinstance(exc, _TRANSIENT_LANEWISE)
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    import kombu.exceptions
    import redis.exceptions

    return isinstance(
        exc,
        redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | redis.exceptions.BusyLoadingError
        | kombu.exceptions.OperationalError,
    )


def reason_of(exc: BaseException) -> str:
    """A one-line reason for a failure record (never a traceback, never document text)."""
    if isinstance(exc, PoisonItem):
        return exc.reason
    if isinstance(exc, LanewiseError):
        return f"{exc.type_slug}: {exc.detail}"
    return f"{type(exc).__name__}: {exc}"[:500]
