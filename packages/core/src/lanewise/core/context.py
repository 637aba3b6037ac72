"""The request context: who is asking, for what, with which prompt and index.

The gateway opens one per HTTP request (``request_scope``); anything running
on its behalf — handlers, the pipeline, streaming generators, tasks they start
(``asyncio`` copies context into new tasks), hooks, log calls — reads it with
``current_request()``. Lanes add their own facts to ``attributes`` (a trace
id, a cost) rather than to new globals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

import msgspec
from lanewise.core.types import ANONYMOUS, Principal


class ResponseOutcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """How a response went, as the gateway's middleware saw it pass."""

    status: int = 0
    """The response's HTTP status (0: none started)."""
    stream: bool = False
    """The response is ``text/event-stream``."""
    body_done: bool = False
    """The last body message was sent (False at the end: the client went away)."""
    disconnected: bool = False
    """Sending to the client failed."""
    error_type: str | None = None
    """The problem type's slug of an error response or of an error event mid-stream."""
    failure: str | None = None
    """The type name of an exception that escaped the route (not a problem response)."""


@dataclass(slots=True)
class RequestContext:
    request_id: str
    principal: Principal = ANONYMOUS
    model: str | None = None
    prompt_name: str | None = None
    prompt_version: str | None = None
    index_version: int | None = None
    started_at: float = field(default_factory=time.time)
    attributes: dict[str, Any] = field(default_factory=dict)
    open_calls: list[Any] = field(default_factory=list)
    """Guarded model calls admitted for this request; the gateway settles any left open
    (a stream the client abandoned before it started) when the request ends."""
    response: ResponseOutcome | None = None
    """How the response went: recorded by the gateway's middleware only while request
    observers are registered (``Components.request_observers``), for them to read."""


TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
"""Keys of ``RequestContext.attributes`` holding the W3C trace context (header values) that
backends forward to their upstreams; a telemetry lane sets them from the client's headers."""


def trace_headers() -> dict[str, str]:
    """The running request's W3C trace context as headers (empty outside a request or trace)."""
    context = _current.get()
    if context is None:
        return {}
    attrs = context.attributes
    parent = attrs.get(TRACEPARENT)
    if not parent:
        return {}
    state = attrs.get(TRACESTATE)
    return {TRACEPARENT: parent, TRACESTATE: state} if state else {TRACEPARENT: parent}


SCOPE_CONTEXT = "lanewise.context"
"""Key of the request's context in the ASGI scope's ``state``: an ASGI layer outside the
gateway's middleware (a lane's telemetry) finds it there when the request ends."""
SCOPE_ATTRIBUTES = "lanewise.context_attributes"
"""Key of a dict in the ASGI scope's ``state`` that an outer ASGI layer fills before the
gateway's middleware runs (a trace id): the context starts with these ``attributes``."""

_current: ContextVar[RequestContext | None] = ContextVar("lanewise_request", default=None)


current_request: Callable[[], RequestContext | None] = _current.get
"""``current_request()``: the context of the request being served here, or None outside
one. The context variable's own ``get`` (a C method): it runs several times per request,
and a Python function around it would add a frame each time."""


def enter_request(context: RequestContext) -> Token[RequestContext | None]:
    """Make ``context`` current; pass the token to :func:`exit_request` (the hot-path form)."""
    return _current.set(context)


def exit_request(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


@contextmanager
def request_scope(context: RequestContext) -> Iterator[RequestContext]:
    """Make ``context`` current for the block (and for tasks started inside it)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
