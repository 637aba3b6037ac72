"""The triton backend against the real bundled tritonserver (deploy/triton/cpu)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from lanewise.core.context import TRACEPARENT, RequestContext, request_scope
from lanewise.core.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from lanewise.core.settings import ComponentConfig
from lanewise.core.testing import factory_context
from lanewise.core.types import ChatChunk, ChatRequest, Message, SamplingParams
from lanewise.inference.triton.backend import TritonBackend
from lanewise.inference.triton.factory import build_triton
from lanewise.inference.triton.server import TritonServer

from .conftest import Events


def backend_for(*urls: str, **options: object) -> TritonBackend:
    config = ComponentConfig(kind="triton", urls=list(urls), **options)
    return build_triton(factory_context(config))


def chat(text: str, *, max_tokens: int = 8, stream: bool = True, **sampling: object) -> ChatRequest:
    return ChatRequest(
        model="tri",
        messages=[Message(role="user", content=text)],
        sampling=SamplingParams(max_tokens=max_tokens, **sampling),  # type: ignore[arg-type]
        stream=stream,
        request_id=f"t-{uuid.uuid4().hex[:10]}",
    )


async def drain(stream: AsyncIterator[ChatChunk], into: list[str]) -> None:
    async for chunk in stream:
        into.append(chunk.delta)


async def test_unary_generation_is_deterministic_and_counts_tokens(
    triton_server: TritonServer,
) -> None:
    backend = backend_for(triton_server.grpc_url)
    try:
        first = await backend.generate(chat("the quick brown fox", stream=False))
        second = await backend.generate(chat("the quick brown fox", stream=False))
        other = await backend.generate(chat("a different prompt entirely", stream=False))
    finally:
        await backend.aclose()
    assert first.text == second.text
    assert first.text != other.text
    assert len(first.text.split()) == 8
    assert first.finish_reason == "length"
    assert first.usage.completion_tokens == 8
    # The chatml prompt around "the quick brown fox", counted by the server's tokenizer.
    assert first.usage.prompt_tokens > 4


async def test_streaming_yields_tokens_one_by_one_and_the_same_text(
    triton_server: TritonServer,
) -> None:
    backend = backend_for(triton_server.grpc_url)
    try:
        whole = await backend.generate(chat("stream me a reply", max_tokens=12, stream=False))
        chunks = [c async for c in backend.stream(chat("stream me a reply", max_tokens=12))]
    finally:
        await backend.aclose()
    deltas = [c.delta for c in chunks if c.delta]
    assert len(deltas) == 12
    assert "".join(deltas) == whole.text
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12


async def test_seed_and_top_k_reach_the_model(triton_server: TritonServer) -> None:
    backend = backend_for(triton_server.grpc_url)
    try:
        plain = await backend.generate(chat("seeded prompt", max_tokens=10))
        seeded = await backend.generate(chat("seeded prompt", max_tokens=10, seed=7))
        again = await backend.generate(chat("seeded prompt", max_tokens=10, seed=7))
        narrow = await backend.generate(chat("seeded prompt", max_tokens=10, top_k=1))
    finally:
        await backend.aclose()
    assert seeded.text == again.text != plain.text
    assert len(set(narrow.text.split())) == 1  # top_k=1 leaves one word to choose


async def test_stop_words_end_generation_before_the_stop_text(
    triton_server: TritonServer,
) -> None:
    backend = backend_for(triton_server.grpc_url)
    try:
        full = await backend.generate(chat("tell me about lanes", max_tokens=20))
        words = full.text.split()
        stop = words[5]
        cut = words.index(stop)
        stopped = await backend.generate(chat("tell me about lanes", max_tokens=20, stop=(stop,)))
        streamed = [
            c
            async for c in backend.stream(chat("tell me about lanes", max_tokens=20, stop=(stop,)))
        ]
    finally:
        await backend.aclose()
    assert stopped.text.split() == words[:cut]
    assert stopped.finish_reason == "stop"
    assert "".join(c.delta for c in streamed).split() == words[:cut]
    assert streamed[-1].finish_reason == "stop"


async def test_consumer_going_away_cancels_generation_on_the_server(
    triton_server: TritonServer, triton_events: Events
) -> None:
    backend = backend_for(triton_server.grpc_url)
    request = chat("a very long answer please", max_tokens=4000)
    stream = backend.stream(request)
    try:
        got = [await anext(stream) for _ in range(3)]
        await stream.aclose()  # what the gateway does when the HTTP client disconnects
    finally:
        await backend.aclose()
    assert all(c.delta for c in got)
    event = await asyncio.to_thread(triton_events.wait_for, request.request_id)
    assert event["outcome"] == "cancelled"
    assert 3 <= event["tokens"] < 4000


async def test_error_mid_stream_raises_upstream_error_after_tokens(
    triton_server: TritonServer, triton_events: Events
) -> None:
    backend = backend_for(triton_server.grpc_url)
    request = chat("please <lanewise:fail-midstream> now", max_tokens=50)
    received: list[str] = []
    try:
        with pytest.raises(UpstreamError, match="failed mid-stream") as info:
            await drain(backend.stream(request), received)
    finally:
        await backend.aclose()
    # The model sent 3 tokens, then the error; through the ensemble the error can
    # overtake the last token still in postprocessing, never the first ones.
    assert 1 <= len([d for d in received if d]) <= 3
    assert info.value.status == 502
    event = await asyncio.to_thread(triton_events.wait_for, request.request_id)
    assert event["outcome"] == "failed"


async def test_deadline_raises_upstream_timeout_and_stops_generation(
    triton_server: TritonServer, triton_events: Events
) -> None:
    backend = backend_for(triton_server.grpc_url, timeout_s=0.3)
    request = chat("slow and long", max_tokens=4000)
    try:
        with pytest.raises(UpstreamTimeout):
            await drain(backend.stream(request), [])
    finally:
        await backend.aclose()
    event = await asyncio.to_thread(triton_events.wait_for, request.request_id)
    assert event["outcome"] == "cancelled"


async def test_max_tokens_above_the_configured_limit_is_invalid(
    triton_server: TritonServer,
) -> None:
    backend = backend_for(triton_server.grpc_url, max_tokens_limit=16)
    try:
        with pytest.raises(InvalidRequest, match="limit of 16") as info:
            backend.stream(chat("x", max_tokens=17))
    finally:
        await backend.aclose()
    assert info.value.extensions["field"] == "max_tokens"


async def test_concurrent_streams_share_one_channel(triton_server: TritonServer) -> None:
    backend = backend_for(triton_server.grpc_url)

    async def one(i: int) -> str:
        completion = await backend.generate(chat(f"prompt number {i}", max_tokens=6))
        return completion.text

    try:
        texts = await asyncio.gather(*(one(i) for i in range(32)))
        client = backend.replicas[0].client
        assert all(r.client is client for r in backend.replicas)
    finally:
        await backend.aclose()
    assert all(len(t.split()) == 6 for t in texts)
    assert len(set(texts)) > 16  # different prompts, different answers


async def test_health_check_and_dead_replica(triton_factory: object) -> None:
    make = triton_factory  # type: ignore[assignment]
    first, second = make(), make()  # type: ignore[operator]
    backend = backend_for(first.grpc_url, second.grpc_url)
    try:
        assert await backend.check() is None
        first.kill()
        reason = await backend.check()
        assert reason is not None
        assert first.grpc_url in reason
        assert second.grpc_url not in reason
        assert reason.startswith("1/2 replica(s) down")
        assert await backend.replicas[0].check() is not None
        assert await backend.replicas[1].check() is None
        # The live replica still serves (the pool layer routes around the dead one).
        completion = await backend.replicas[1].generate(chat("still here", max_tokens=4))
        assert len(completion.text.split()) == 4
    finally:
        await backend.aclose()


async def test_llmapi_layout_uses_unary_calls_and_its_tensor_names(
    triton_server: TritonServer,
) -> None:
    backend = backend_for(triton_server.grpc_url, layout="llmapi", model="llmapi")
    assert backend.replicas[0].profile.decoupled is False
    try:
        first = await backend.generate(chat("the llm api layout", max_tokens=9))
        again = await backend.generate(chat("the llm api layout", max_tokens=9))
        seeded = await backend.generate(chat("the llm api layout", max_tokens=9, seed=3))
        words = first.text.split()
        stopped = await backend.generate(chat("the llm api layout", max_tokens=9, stop=(words[4],)))
        streamed = [c async for c in backend.stream(chat("the llm api layout", max_tokens=9))]
    finally:
        await backend.aclose()
    assert len(words) == 9
    assert first.text == again.text != seeded.text
    assert first.finish_reason == "length"
    assert stopped.text.split() == words[: words.index(words[4])]
    assert stopped.finish_reason == "stop"
    # No token counts in this layout: estimated from the text.
    assert first.usage.completion_tokens == 9
    assert "".join(c.delta for c in streamed) == first.text


async def test_unary_deadline_cancels_on_the_server(
    triton_server: TritonServer, triton_events: Events
) -> None:
    backend = backend_for(triton_server.grpc_url, layout="llmapi", model="llmapi", timeout_s=0.2)
    request = chat("never finishes in time", max_tokens=4000)
    try:
        with pytest.raises(UpstreamTimeout):
            await backend.generate(request)
    finally:
        await backend.aclose()
    event = await asyncio.to_thread(triton_events.wait_for, request.request_id)
    assert event["outcome"] == "cancelled"
    assert event["tokens"] < 4000


TRACE_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("options", "stream"),
    [({"layout": "ensemble"}, True), ({"layout": "llmapi", "model": "llmapi"}, False)],
)
async def test_trace_context_reaches_triton_as_grpc_metadata(
    triton_server: TritonServer, triton_events: Events, options: dict[str, str], stream: bool
) -> None:
    """Streamed (``ModelStreamInfer``) and unary (``ModelInfer``) calls carry ``traceparent``;
    the server forwards it to the model, which records it with the request's outcome."""
    backend = backend_for(triton_server.grpc_url, **options)
    request = chat("follow the trace", max_tokens=3, stream=stream)
    untraced = chat("no trace here", max_tokens=3, stream=stream)
    context = RequestContext(request_id=request.request_id, attributes={TRACEPARENT: TRACE_PARENT})
    try:
        with request_scope(context):
            completion = await backend.generate(request)
        await backend.generate(untraced)
    finally:
        await backend.aclose()
    assert completion.finish_reason == "length"
    assert triton_events.wait_for(request.request_id)["traceparent"] == TRACE_PARENT
    assert triton_events.wait_for(untraced.request_id)["traceparent"] is None
