"""The request context reaches hooks, stream generators and the tasks they start."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
from lanewise.core.context import current_request
from lanewise.core.hookspecs import hookimpl
from lanewise.core.types import ChatChunk, ChatCompletion, Usage, UsageEvent

KEY = "sk-context-test"


class Seen:
    def __init__(self) -> None:
        self.where: dict[str, Any] = {}


class ContextBackend:
    name = "ctx"

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def generate(self, request: Any) -> ChatCompletion:
        self.seen.where["generate"] = current_request()
        return ChatCompletion(model=request.model, text="ok", finish_reason="stop", usage=Usage())

    async def stream(self, request: Any) -> Any:
        self.seen.where["stream"] = current_request()

        async def background() -> Any:
            await asyncio.sleep(0)
            return current_request()

        self.seen.where["task"] = await asyncio.create_task(background())
        yield ChatChunk(delta="ok")
        yield ChatChunk(finish_reason="stop", usage=Usage(completion_tokens=1))


class Plugin:
    def __init__(self) -> None:
        self.seen = Seen()

    @hookimpl
    def lanewise_register_backends(self, register: Any) -> None:
        register("ctx", lambda ctx: ContextBackend(self.seen))

    @hookimpl
    def lanewise_on_usage(self, event: UsageEvent) -> None:
        self.seen.where["on_usage"] = current_request()


def test_stream_generator_background_task_and_hooks_see_the_request(gateway) -> None:
    plugin = Plugin()
    keys = [{"sha256": hashlib.sha256(KEY.encode()).hexdigest(), "tenant": "acme", "user": "ann"}]
    with gateway(
        plugins=(plugin,), models={"ctx": {"kind": "ctx"}}, gateway={"api_keys": keys}
    ) as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "ctx", "stream": True, "messages": [{"role": "user", "content": "x"}]},
            headers={"authorization": f"Bearer {KEY}", "x-request-id": "req-ctx-1"},
        )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "req-ctx-1"
    for where in ("stream", "task", "on_usage"):
        context = plugin.seen.where[where]
        assert context is not None, where
        assert context.request_id == "req-ctx-1"
        assert (context.principal.tenant, context.principal.user) == ("acme", "ann")
        assert context.model == "ctx"
    assert current_request() is None  # nothing leaks out of the request


def test_each_request_gets_its_own_context(gateway) -> None:
    plugin = Plugin()
    with gateway(plugins=(plugin,), models={"ctx": {"kind": "ctx"}}) as base:
        ids = []
        for _ in range(2):
            r = httpx.post(
                f"{base}/v1/chat/completions",
                json={"model": "ctx", "messages": [{"role": "user", "content": "x"}]},
            )
            ids.append((r.headers["x-request-id"], plugin.seen.where["generate"].request_id))
    assert ids[0][0] != ids[1][0]
    assert all(header == seen for header, seen in ids)
