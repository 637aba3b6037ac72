"""A scripted chat backend and a gateway with the observe lane, served for real over HTTP.

The user message scripts the backend: ``tokens=N`` words, ``delay=S`` between
them, ``fail=before|mid`` to raise an upstream error before the first token or
half-way. Nothing in the observe lane is mocked; the span exporter is the
OpenTelemetry SDK's in-memory one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from lanewise.core.context import current_request
from lanewise.core.errors import UpstreamError
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import serve_in_thread
from lanewise.core.stages import timed_stage
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest, Hit, Usage
from lanewise.observe.logs import flush_logging
from lanewise.observe.plugin import ObservePlugin
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def script_of(request: ChatRequest) -> dict[str, str]:
    text = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


class ScriptedBackend:
    name = "scripted"
    seen_traceparents: list[str | None] = []
    """What each call found in the request context for its upstream (``traceparent``)."""

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        text, usage, finish = [], Usage(), "stop"
        async for chunk in self.stream(request):
            text.append(chunk.delta)
            usage = chunk.usage or usage
            finish = chunk.finish_reason or finish
        return ChatCompletion(
            model=request.model, text="".join(text), finish_reason=finish, usage=usage
        )  # type: ignore[arg-type]

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        context = current_request()
        self.seen_traceparents.append(context.attributes.get("traceparent") if context else None)
        script = script_of(request)
        n = int(script.get("tokens", "3"))
        delay = float(script.get("delay", "0"))
        fail = script.get("fail")
        if "log" in script:
            logging.getLogger("scripted.backend").warning("backend note %s", script["log"])
        if fail == "before":
            raise UpstreamError("the upstream refused on purpose")
        for i in range(n):
            if fail == "mid" and i == n // 2:
                raise UpstreamError("the upstream broke on purpose")
            if delay:
                await asyncio.sleep(delay)
            yield ChatChunk(delta=f"w{i} ")
        finish = "length" if script.get("finish") == "length" else "stop"
        yield ChatChunk(finish_reason=finish, usage=Usage(prompt_tokens=7, completion_tokens=n))  # type: ignore[arg-type]


class VersionedRetriever:
    """Returns one hit and reports, like the retrieval lane, the index version it served."""

    default_k = 1
    degrade = False

    def __init__(self, plugin: ScriptedPlugin) -> None:
        self.plugin = plugin

    async def retrieve(
        self, *, principal: Any, query: str, k: int, filter: Any = None, request_id: str = ""
    ) -> list[Hit]:
        attrs = {
            "lanewise.index.version": self.plugin.index_version,
            "lanewise.cache.result": "miss",
        }
        with timed_stage(self.plugin.hook, request_id, "cache", attrs):
            pass
        return [Hit(id="doc-1", score=1.0, text="The sky is blue.", source="sky.md")]


class ScriptedPlugin:
    def __init__(self) -> None:
        self.index_version = 1
        self.hook: Any = None

    @hookimpl
    def lanewise_register_backends(self, register: Any) -> None:
        register("scripted", lambda *_: ScriptedBackend(), default=True)

    @hookimpl
    def lanewise_resolve_retriever(self) -> VersionedRetriever:
        return VersionedRetriever(self)


@pytest.fixture
def observe_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """JSON log lines to a file the test reads; returns its path."""
    log_file = tmp_path / "lanewise.log"
    monkeypatch.setenv("LANEWISE_OBSERVE__LOG_FORMAT", "json")
    monkeypatch.setenv("LANEWISE_OBSERVE__LOG_FILE", str(log_file))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return log_file


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def observed_gateway(
    observe_env: Path,
    spans: InMemorySpanExporter,
    lanewise_settings: Callable[..., Any],
    register_plugin: Callable[..., Any],
) -> Callable[..., Any]:
    """``with observed_gateway(**settings) as (base, plugin): ...`` serves a gateway."""

    @contextmanager
    def serve(*, exporter: Any = None, **overrides: Any) -> Iterator[tuple[str, ObservePlugin]]:
        plugin = ObservePlugin(span_exporter=exporter or spans)
        scripted = ScriptedPlugin()
        pm = register_plugin(scripted, plugin, allowlist=[])
        scripted.hook = pm.hook
        plugin.scripted = scripted  # type: ignore[attr-defined]
        plugin.scripted_backend_class = ScriptedBackend  # type: ignore[attr-defined]
        overrides.setdefault("models", {"scripted": {"kind": "scripted"}})
        app = create_app(lanewise_settings(**overrides), plugin_manager=pm)
        with serve_in_thread(app) as base:
            yield base, plugin

    return serve


def log_lines(path: Path) -> list[dict[str, Any]]:
    flush_logging()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summaries(path: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for line in log_lines(path):
        if line.get("event") == "request.summary":
            out.setdefault(line["request_id"], []).append(line)
    return out


def wait_for_summaries(path: Path, ids: list[str], timeout: float = 15.0) -> dict[str, Any]:
    """Summary lines are written by a background thread; wait until every id has one."""
    deadline = time.monotonic() + timeout
    while True:
        found = summaries(path)
        if all(i in found for i in ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


@pytest.fixture
def read_summaries(observe_env: Path) -> Callable[..., dict[str, Any]]:
    """``read_summaries(ids)``: the summary lines by request id, once every id has one."""

    def read(ids: list[str], timeout: float = 15.0) -> dict[str, Any]:
        return wait_for_summaries(observe_env, ids, timeout)

    return read


@pytest.fixture
def read_logs(observe_env: Path) -> Callable[[], list[dict[str, Any]]]:
    return lambda: log_lines(observe_env)
