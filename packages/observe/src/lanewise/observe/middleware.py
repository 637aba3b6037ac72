"""Pure ASGI middleware: sees each /v1 request's final status, its stream end or disconnect.

It is the outermost middleware, outside core's (which authenticates), so requests
refused with 401 get their summary line too; it hands core the trace for the
request context through the scope's state, and finds that context there when the
request ends (``lanewise.core.context.SCOPE_ATTRIBUTES`` / ``SCOPE_CONTEXT``).

It is the only per-request code the lane adds to the hot path: create a record,
put it in a context variable for the events, note the status and scan outgoing
bytes for an error's problem type. Everything else happens once, when it ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lanewise.core.errors import LanewiseError
from lanewise.core.gateway.middleware import request_id_from
from lanewise.observe.record import CURRENT
from lanewise.observe.telemetry import Telemetry, count_drop
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException
from litestar.types import ASGIApp

OBSERVED_PREFIX = "/v1/"
OBSERVED = "lanewise.observed"
"""Scope key: an exception passed through this middleware (its summary is written)."""
UNROUTED_SLUGS = {404: "not-found", 405: "method-not-allowed"}
CONTENT_TYPE = b"content-type"
EVENT_STREAM = b"text/event-stream"
log = logging.getLogger("lanewise.observe")


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app: Any = app
        self.telemetry = telemetry

    # ASGI messages are plain dicts here: Litestar's TypedDict unions cost casts
    # on every branch and buy nothing at this level.
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(OBSERVED_PREFIX):
            await self.app(scope, receive, send)
            return
        telemetry = self.telemetry
        try:
            record = telemetry.start(scope)
        except Exception:
            count_drop("internal")
            log.warning("telemetry could not start for %s", scope["path"], exc_info=True)
            await self.app(scope, receive, send)
            return
        token = CURRENT.set(record)

        async def observed_send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                body = message.get("body")
                if body:
                    record.scan_body(body)
                if not message.get("more_body", False):
                    record.body_done = True
            elif kind == "http.response.start":
                record.status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == CONTENT_TYPE:
                        record.stream = value.startswith(EVENT_STREAM)
                        break
            try:
                await send(message)
            except OSError:
                record.disconnected = True
                raise

        async def observed_receive() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.disconnect" and not record.body_done:
                record.disconnected = True
            return message

        try:
            await self.app(scope, observed_receive, observed_send)
        except BaseException as exc:
            scope[OBSERVED] = True  # for Litestar's outer exception handler: seen here
            if not record.status and isinstance(exc, LanewiseError | HTTPException):
                # Raised outside the route (core's authentication): Litestar's outer
                # handler turns it into a problem response after we are gone.
                record.status = exc.status if isinstance(exc, LanewiseError) else exc.status_code
                record.error_type = (
                    exc.type_slug if isinstance(exc, LanewiseError) else str(record.status)
                )
                record.body_done = True
            else:
                record.failed = exc
            raise
        finally:
            CURRENT.reset(token)
            try:
                telemetry.finish(record, scope)
            except Exception:
                count_drop("internal")
                log.warning("telemetry could not finish %s", record.request_id, exc_info=True)


def unrouted_hook(telemetry: Telemetry) -> Callable[[Exception, Any], None]:
    """An ``after_exception`` hook: the summary line of a 404 or 405.

    Litestar's router refuses a path or method no route takes before any route
    middleware (this lane's included) runs; its outer exception handler calls
    this hook on the way to the problem response, and nothing else on the
    success path.
    """

    def after_exception(exc: Exception, scope: Any) -> None:
        if (
            not isinstance(exc, NotFoundException | MethodNotAllowedException)
            or scope.get("type") != "http"
            or not scope["path"].startswith(OBSERVED_PREFIX)
            or CURRENT.get() is not None  # raised inside a route: its record has it
            or scope.get(OBSERVED)
        ):
            return
        try:
            state = scope.setdefault("state", {})
            if not state.get("request_id"):  # the problem response reuses it
                state["request_id"] = request_id_from(scope["headers"]).decode()
            record = telemetry.start(scope)
            record.unrouted = True
            record.status = exc.status_code
            record.error_type = UNROUTED_SLUGS.get(exc.status_code)
            record.body_done = True
            telemetry.finish(record, scope)
        except Exception:
            count_drop("internal")
            log.warning("telemetry could not record %s", scope.get("path"), exc_info=True)

    return after_exception


def middleware_for(telemetry: Telemetry) -> Any:
    from litestar.middleware import DefineMiddleware

    return DefineMiddleware(ObserveMiddleware, telemetry=telemetry)
