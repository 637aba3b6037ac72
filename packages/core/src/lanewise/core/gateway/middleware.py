"""Pure ASGI middleware: request ids. Cheap enough for the hot path."""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Take a well-formed ``X-Request-ID`` from the caller, else mint one; echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        rid = b""
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER and _VALID_ID.match(value):
                rid = value
                break
        if not rid:
            rid = uuid.uuid4().hex.encode()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid.decode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, rid))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
