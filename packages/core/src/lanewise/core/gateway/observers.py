"""Request observers: lanes that watch every request without an ASGI layer of their own.

A telemetry lane needs to see each request start and end, with its status,
whether it streamed, and how it ended. Its own ASGI middleware would cost a
coroutine per response message on every request; instead it appends a
:class:`RequestObserver` to ``Components.request_observers`` (in
``lanewise_configure_gateway``) and the gateway's middleware, which already
sees every message, records the outcome on the request context
(``context.response``, a :class:`~lanewise.core.context.ResponseOutcome`) and calls
the observers directly. With no observer registered nothing of this runs.
"""

from __future__ import annotations

from typing import Any, Protocol

from lanewise.core.context import RequestContext, ResponseOutcome

EVENT_STREAM = b"text/event-stream"
CONTENT_TYPE = b"content-type"
PROBLEM_PREFIX = "https://lanewise.dev/problems/"
TYPE_MARK = b'"type":"'
STREAM_ERROR_MARK = b'data: {"error":{"type":"'


class RequestObserver(Protocol):
    """Called on the event loop for every routed HTTP request; must not raise or block."""

    def request_started(self, context: RequestContext, scope: Any) -> None:
        """Before authentication: ``context.attributes`` set here reach backends (a trace)."""

    def request_ended(self, context: RequestContext, scope: Any) -> None:
        """After the response (or the exception that ended it); ``context.response`` is final."""


def note_start(response: ResponseOutcome, message: Any) -> None:
    """``http.response.start``: the status and whether the body is an event stream."""
    response.status = message["status"]
    for name, value in message.get("headers", ()):
        if name == CONTENT_TYPE:
            response.stream = value.startswith(EVENT_STREAM)
            break


def note_body(response: ResponseOutcome, message: Any) -> None:
    """``http.response.body``: the end of the body, and an error's problem type.

    ``bytes.find``/``startswith`` on each chunk costs tens of nanoseconds; no JSON
    is parsed on the success path.
    """
    body = message.get("body")
    if body:
        if response.status >= 400:
            if response.error_type is None:
                response.error_type = problem_type(body, TYPE_MARK)
        elif body.startswith(STREAM_ERROR_MARK):
            response.error_type = problem_type(body, STREAM_ERROR_MARK)
    if not message.get("more_body", False):
        response.body_done = True


def note_exception(response: ResponseOutcome, exc: BaseException) -> None:
    """An exception left the route: a problem response the outer handler will send, or a crash."""
    from lanewise.core.errors import LanewiseError
    from litestar.exceptions import HTTPException

    if response.status:  # the response had started: it failed part-way
        response.failure = type(exc).__name__
    elif isinstance(exc, LanewiseError):
        response.status, response.error_type, response.body_done = exc.status, exc.type_slug, True
    elif isinstance(exc, HTTPException):
        response.status, response.error_type = exc.status_code, str(exc.status_code)
        response.body_done = True
    else:
        response.failure = type(exc).__name__


def problem_type(body: bytes, mark: bytes) -> str | None:
    at = body.find(mark)
    if at < 0:
        return None
    start = at + len(mark)
    end = body.find(b'"', start)
    if end <= start:
        return None
    return body[start:end].decode("ascii", "replace").removeprefix(PROBLEM_PREFIX)
