"""Pieces for benches that drive the gateway's ASGI app directly (no HTTP server).

The lanewise imports happen inside :func:`instant_plugin`: a bench child may import
lanewise from another tree (``--before REF``) than the one this file comes from.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

CHAT_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/chat/completions",
    "raw_path": b"/v1/chat/completions",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"content-type", b"application/json"), (b"host", b"bench")],
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 80),
}
"""One ``POST /v1/chat/completions``; copy it per request (``dict(CHAT_SCOPE, state={})``):
the app writes into a scope."""

CHAT_BODY = json.dumps(
    {"model": "instant", "messages": [{"role": "user", "content": "How are lanes deployed?"}]}
).encode()


def asgi_io(body: bytes) -> tuple[Any, Any, list[int]]:
    """``receive`` (one request message carrying ``body``), ``send`` (keeps each response's
    status) and the list of statuses, for driving the app with raw ASGI calls."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    return receive, send, statuses


def instant_plugin() -> Any:
    """A plugin whose default backend ``instant`` answers at once (no upstream)."""
    from lanewise.core.hookspecs import hookimpl
    from lanewise.core.types import ChatChunk, ChatCompletion, Usage

    class Instant:
        name = "instant"

        async def generate(self, request: Any) -> Any:
            return ChatCompletion(
                model=request.model,
                text="Each lane is its own service.",
                finish_reason="stop",
                usage=Usage(prompt_tokens=6, completion_tokens=6),
            )

        async def stream(self, request: Any) -> Any:
            yield ChatChunk(delta="ok", finish_reason="stop", usage=Usage())

    class Plugin:
        @hookimpl
        def lanewise_register_backends(self, register: Any) -> None:
            # *args: the factory signature differs between the trees compared.
            register("instant", lambda *args: Instant(), default=True)

    return Plugin()


async def start_lifespan(app: Any) -> Any:
    """Run the app's ASGI lifespan startup; returns an async ``stop()`` for its shutdown."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.get_running_loop().create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop
