"""The pipeline: stage events, usage events, skipped stages and the upstream deadline."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from lanewise.core.container import build_components
from lanewise.core.errors import NotFound, UpstreamTimeout
from lanewise.core.hookspecs import hookimpl
from lanewise.core.types import ChatRequest, Hit, Message, RetrievalRequest


class Docs:
    """A retriever over two fixed passages (the retrieval lane supplies real ones)."""

    default_k, degrade = 4, False

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def retrieve(self, *, principal, query, k, filter=None, request_id=""):
        self.calls.append({"query": query, "k": k, "filter": filter, "tenant": principal.tenant})
        hits = [
            Hit(id="d1", score=0.9, text="Lanes scale alone.", source="lanes.md"),
            Hit(id="d2", score=0.4, text="Hooks join lanes.", source="hooks.md"),
        ]
        return hits[:k]


class RetrieverPlugin:
    def __init__(self) -> None:
        self.retriever = Docs()

    @hookimpl
    def lanewise_resolve_retriever(self, components):
        return self.retriever


def request(text: str = "what are lanes", **kw: Any) -> ChatRequest:
    return ChatRequest(model="echo", messages=[Message(role="user", content=text)], **kw)


@pytest.fixture
def pipeline_for(lanewise_settings, core_pm, echo_plugin):
    def make(*plugins: object, **overrides: Any) -> Any:
        container = build_components(lanewise_settings(**overrides), core_pm(echo_plugin, *plugins))
        return container.pipeline()

    return make


async def test_no_retriever_skips_retrieve_and_prompt(pipeline_for, echo_plugin):
    pipeline = pipeline_for()
    assert pipeline.retriever is None
    completion = await pipeline.complete(request(retrieval=RetrievalRequest(k=2)))
    assert completion.text == "what are lanes"
    assert completion.citations == []
    assert [e.stage for e in echo_plugin.stages] == ["generate"]


async def test_retrieve_prompt_generate_each_emit_one_stage_event(pipeline_for, echo_plugin):
    plugin = RetrieverPlugin()
    pipeline = pipeline_for(plugin)
    req = request(request_id="r-1", retrieval=RetrievalRequest(k=2, filter={"lang": "en"}))
    completion = await pipeline.complete(req)
    stages = echo_plugin.stages
    assert [e.stage for e in stages] == ["retrieve", "prompt", "generate"]
    assert {e.request_id for e in stages} == {"r-1"}
    assert all(e.ok for e in stages)
    assert stages[0].attributes == {"k": 2, "hits": 2}
    assert stages[1].attributes == {
        "lanewise.prompt.template": "builtin/rag",
        "lanewise.prompt.version": "1",
    }
    assert plugin.retriever.calls == [
        {"query": "what are lanes", "k": 2, "filter": {"lang": "en"}, "tenant": "default"}
    ]
    assert [c.marker for c in completion.citations] == ["[1]", "[2]"]
    assert [c.source for c in completion.citations] == ["lanes.md", "hooks.md"]


async def test_prompt_stage_puts_the_sources_in_a_system_message(pipeline_for):
    pipeline = pipeline_for(RetrieverPlugin())
    prepared = await pipeline.prepare(request(retrieval=RetrievalRequest(k=1)))
    system, user = prepared.messages
    assert system.role == "system"
    assert "[1] (lanes.md)\nLanes scale alone." in system.content
    assert "Hooks join lanes." not in system.content
    assert user.content == "what are lanes"


async def test_retriever_installed_but_not_asked_for_is_skipped(pipeline_for, echo_plugin):
    plugin = RetrieverPlugin()
    pipeline = pipeline_for(plugin)
    await pipeline.complete(request())
    assert [e.stage for e in echo_plugin.stages] == ["generate"]
    assert plugin.retriever.calls == []


async def test_one_usage_event_per_model_call_with_ttft(pipeline_for, echo_plugin):
    pipeline = pipeline_for(models={"echo": {"kind": "echo", "delay_s": 0.01}})
    await pipeline.complete(request("a b c", request_id="u-1"))
    await pipeline.complete(request("d e", request_id="u-2"))
    assert [e.request_id for e in echo_plugin.usage] == ["u-1", "u-2"]
    first = echo_plugin.usage[0]
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (3, 3)
    assert first.ttft_s is not None
    assert 0 < first.ttft_s <= first.duration_s
    generate = next(e for e in echo_plugin.stages if e.stage == "generate")
    assert generate.attributes["gen_ai.usage.input_tokens"] == 3
    assert generate.attributes["gen_ai.usage.output_tokens"] == 3


async def test_unknown_model_is_not_found_listing_models(pipeline_for, echo_plugin):
    pipeline = pipeline_for()
    with pytest.raises(NotFound) as info:
        await pipeline.complete(ChatRequest(model="nope", messages=[]))
    assert info.value.extensions["available_models"] == ["echo"]
    assert echo_plugin.usage == []  # no model call was made


async def test_deadline_raises_upstream_timeout(pipeline_for, echo_plugin):
    pipeline = pipeline_for(
        models={"echo": {"kind": "echo", "delay_s": 5}}, gateway={"request_timeout_s": 0.2}
    )
    with pytest.raises(UpstreamTimeout) as info:
        await pipeline.complete(request())
    assert info.value.status == 504
    assert info.value.extensions == {"deadline_s": 0.2}
    assert "gateway.request_timeout_s" in info.value.detail
    [generate] = echo_plugin.stages
    assert generate.ok is False
    [usage] = echo_plugin.usage  # the call is still metered, with no first token
    assert usage.ttft_s is None


async def test_per_request_deadline_wins(pipeline_for):
    pipeline = pipeline_for(models={"echo": {"kind": "echo", "delay_s": 5}})
    with pytest.raises(UpstreamTimeout) as info:
        await pipeline.complete(request(deadline_s=0.1))
    assert info.value.extensions == {"deadline_s": 0.1}


def test_deadline_over_http_is_504_problem(gateway, chat):
    overrides = {
        "models": {"echo": {"kind": "echo", "delay_s": 5}},
        "gateway": {"request_timeout_s": 0.2},
    }
    with gateway(**overrides) as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=chat())
        with httpx.stream(
            "POST", f"{base}/v1/chat/completions", json=chat(stream=True)
        ) as streamed:
            events = [
                json.loads(line[6:]) for line in streamed.iter_lines() if line.startswith("data: {")
            ]
    assert r.status_code == 504
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "https://lanewise.dev/problems/upstream-timeout"
    assert body["deadline_s"] == 0.2
    assert events[-1]["error"]["type"] == "https://lanewise.dev/problems/upstream-timeout"
    assert events[-1]["error"]["code"] == 504


async def test_a_failing_stage_is_reported_not_ok(pipeline_for, echo_plugin):
    class Broken:
        default_k, degrade = 4, False

        async def retrieve(self, **kwargs):
            raise RuntimeError("index gone")

    class Plugin:
        @hookimpl
        def lanewise_resolve_retriever(self, components):
            return Broken()

    pipeline = pipeline_for(Plugin())
    with pytest.raises(RuntimeError):
        await pipeline.complete(request(retrieval=RetrievalRequest(k=1)))
    assert [(e.stage, e.ok) for e in echo_plugin.stages] == [("retrieve", False)]
