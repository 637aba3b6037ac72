"""Shared fixtures of the inference lane's tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import serve_in_thread
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest, Usage
from lanewise.inference.completion import collect


class SlowBackend:
    """A backend that streams one token per ``delay_s`` and records how it ended.

    Used where the test needs to watch the gateway's side of a stream
    (keep-alives, client disconnects); the tokens themselves do not matter.
    """

    def __init__(self, delay_s: float = 0.2, tokens: int = 1000) -> None:
        self.name = "slow"
        self.delay_s = delay_s
        self.tokens = tokens
        self.started = threading.Event()
        self.ended = threading.Event()
        self.outcome: str | None = None
        self.emitted = 0

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.started.set()
        try:
            for i in range(self.tokens):
                await asyncio.sleep(self.delay_s)
                self.emitted += 1
                yield ChatChunk(delta=f"t{i} ")
            yield ChatChunk(finish_reason="stop", usage=Usage(completion_tokens=self.tokens))
            self.outcome = "finished"
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            raise
        except GeneratorExit:
            self.outcome = "closed"
            raise
        finally:
            self.ended.set()

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        return await collect(request.model, self.stream(request))


class BackendPlugin:
    """Registers ready-made backend objects under their names (test plugin)."""

    def __init__(self, **backends: Any) -> None:
        self.backends = backends

    @hookimpl
    def lanewise_register_backends(self, register: Any) -> None:
        for name, backend in self.backends.items():
            register(name, lambda ctx, b=backend: b)


@pytest.fixture
def gateway(
    lanewise_settings: Callable[..., Any],
    register_plugin: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Any]:
    """``with gateway(models=..., backends={...}, **settings) as base_url: ...``"""
    from contextlib import contextmanager

    @contextmanager
    def start(*, backends: dict[str, Any] | None = None, **overrides: Any) -> Iterator[str]:
        # Each gateway owns its data directory (the embedded stores lock theirs).
        overrides.setdefault("data_dir", tmp_path_factory.mktemp("gateway"))
        if backends:
            overrides.setdefault("models", {name: {"kind": name} for name in backends})
        pm = register_plugin(BackendPlugin(**(backends or {})))
        app = create_app(lanewise_settings(**overrides), plugin_manager=pm)
        with serve_in_thread(app) as base:
            yield base

    return start


@pytest.fixture
def slow_backend() -> type[SlowBackend]:
    """The :class:`SlowBackend` class (test modules cannot import conftest by name)."""
    return SlowBackend
