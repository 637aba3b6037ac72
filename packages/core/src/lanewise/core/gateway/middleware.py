"""The gateway's request middleware: request id, request context, authentication.

One Litestar middleware (cheap on the hot path: one pass over the headers)
that, for every routed HTTP request:

* takes a well-formed ``X-Request-ID`` from the caller or mints one, and
  echoes it on the response;
* opens the request context (:mod:`lanewise.core.context`) that hooks, the
  pipeline, stream generators and log calls read, and leaves it in the scope's
  ``state`` (``SCOPE_CONTEXT``) for ASGI layers outside this one; such a layer can
  hand the context its first ``attributes`` (``SCOPE_ATTRIBUTES``: a trace id);
* authenticates ``/v1`` routes through ``lanewise_resolve_principal`` and puts
  the :class:`~lanewise.core.types.Principal` where Litestar keeps the
  authenticated user (``request.user``); failed authentications are counted per
  client address and, past ``gateway.auth_failure_limit``, answered 429 before
  any key is checked (:mod:`lanewise.core.gateway.auth_throttle`);
* when the request ends, however it ends, settles any guarded model call that
  nothing settled (a stream abandoned before it started);
* when lanes registered request observers (:mod:`lanewise.core.gateway.observers`),
  records the response's outcome on the context and calls them at the start and
  the end of the request.

Unrouted requests (404/405) never reach route middleware; the problem
handler gives those their request id.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from lanewise.core.context import (
    SCOPE_ATTRIBUTES,
    SCOPE_CONTEXT,
    RequestContext,
    ResponseOutcome,
    enter_request,
    exit_request,
)
from lanewise.core.errors import Unauthorized
from lanewise.core.gateway.auth_throttle import AuthFailureThrottle
from lanewise.core.gateway.observers import (
    RequestObserver,
    note_body,
    note_exception,
    note_start,
)
from lanewise.core.guards import settle_abandoned
from lanewise.core.settings import Settings
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
HTTP_RESPONSE_START = "http.response.start"
API_PREFIX = "/v1/"
log = logging.getLogger("lanewise.gateway")
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _VALID_ID.match(value):
            return value
    return os.urandom(16).hex().encode()


class RawHeaders(Mapping[str, str]):
    """The request's headers as a read-only mapping, decoded only when asked for.

    ``lanewise_resolve_principal`` usually reads one or two headers; decoding
    every header of every request into a dict would cost more than the lookup.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, key: str, default: Any = None) -> Any:
        wanted = key.lower().encode("latin-1")
        for name, value in self._raw:
            if name == wanted:
                return value.decode("latin-1")
        return default

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return str(value)

    def __iter__(self) -> Iterator[str]:
        return (name.decode("latin-1") for name, _ in self._raw)

    def __len__(self) -> int:
        return sum(1 for _ in self._raw)


class GatewayMiddleware:
    """Registered as ``DefineMiddleware(GatewayMiddleware, settings=..., hook=..., throttle=...)``.

    A plain ASGI callable rather than Litestar's ``ASGIMiddleware`` base: it runs for
    every route, so the base's per-request exclusion checks would be pure cost.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        hook: Any,
        throttle: AuthFailureThrottle,
        observers: list[RequestObserver] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.hook = hook
        # One table for the app: Litestar builds this middleware once per route.
        self.throttle = throttle
        # The app's list, filled by lanes while the app is configured (so read per request).
        self.observers = observers if observers is not None else []

    async def authenticate(self, scope: Scope, raw_headers: Iterable[tuple[bytes, bytes]]) -> Any:
        """The caller's principal; failures are counted per client address (then 429)."""
        client = scope.get("client")
        address = client[0] if client else ""
        self.throttle.check(address)
        try:
            principal = self.hook.lanewise_resolve_principal(
                headers=RawHeaders(raw_headers), settings=self.settings
            )
            if principal is None:
                raise Unauthorized("no authentication plugin accepted this request")
        except Unauthorized:
            await self.throttle.failed(address)
            raise
        return principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        next_app = self.app
        raw_headers = scope["headers"]
        rid = request_id_from(raw_headers)
        state = scope.setdefault("state", {})
        # An outer layer's attributes (a trace id) are on the context from its start, and
        # the context stays findable in the scope after this middleware is done.
        context = RequestContext(
            request_id=rid.decode(), attributes=state.get(SCOPE_ATTRIBUTES) or {}
        )
        state["request_id"] = context.request_id
        state[SCOPE_CONTEXT] = context

        observers = self.observers
        response = None
        if observers:
            # In this coroutine rather than a nested one: an extra frame would be
            # entered again each time the request resumes.
            response = context.response = ResponseOutcome()
            for observer in observers:
                try:
                    observer.request_started(context, scope)
                except Exception:  # an observer's failure must not fail the request
                    log.warning("request observer %r failed", observer, exc_info=True)

            async def send_next(message: Message) -> None:
                if message["type"] == HTTP_RESPONSE_START:
                    add_request_id(message, rid)
                    note_start(response, message)
                else:
                    note_body(response, message)
                try:
                    await send(message)
                except OSError:
                    response.disconnected = True
                    raise

        else:

            async def send_next(message: Message) -> None:
                if message["type"] == HTTP_RESPONSE_START:
                    add_request_id(message, rid)
                await send(message)

        # Not request_scope(): a generator-based context manager costs several µs.
        token = enter_request(context)
        try:
            if scope["path"].startswith(API_PREFIX):
                principal = await self.authenticate(scope, raw_headers)
                context.principal = principal
                scope["user"] = principal
            await next_app(scope, receive, send_next)
        except BaseException as exc:
            if response is not None:
                note_exception(response, exc)
            raise
        finally:
            try:
                if context.open_calls:
                    await settle_abandoned(context)
            finally:
                exit_request(token)
                for observer in observers:
                    try:
                        observer.request_ended(context, scope)
                    except Exception:
                        log.warning("request observer %r failed", observer, exc_info=True)


def add_request_id(message: Any, rid: bytes) -> None:
    headers = message.get("headers", ())
    # Problem responses carry the id already (they are also sent for requests that
    # never reach this middleware); check only those.
    if message["status"] < 400 or all(n != REQUEST_ID_HEADER for n, _ in headers):
        message["headers"] = [*headers, (REQUEST_ID_HEADER, rid)]
