"""The ``openai`` backend against a real server: a second lanewise gateway (extractive)."""

from __future__ import annotations

import openai
import pytest
from lanewise.core.errors import NotFound, Unavailable, UpstreamTimeout
from lanewise.core.server import free_port
from lanewise.core.types import ChatRequest, Message, SamplingParams
from lanewise.inference.openai_compat import OpenAICompatBackend

CONTEXT = "The batch pool runs on spot capacity. The interactive pool is warm."
MESSAGES = [
    {"role": "system", "content": CONTEXT},
    {"role": "user", "content": "Where does the batch pool run?"},
]


def chat(**sampling: object) -> ChatRequest:
    return ChatRequest(
        model="upstream",
        messages=[Message(role=m["role"], content=m["content"]) for m in MESSAGES],
        sampling=SamplingParams(**sampling),  # type: ignore[arg-type]
    )


@pytest.fixture
def upstream(gateway):
    with gateway(models={"extractive": {"kind": "extractive"}}) as base:
        yield f"{base}/v1"


async def test_stream_and_generate_against_a_real_upstream(upstream):
    backend = OpenAICompatBackend(base_url=upstream, model="extractive")
    try:
        chunks = [c async for c in backend.stream(chat())]
        whole = await backend.generate(chat())
    finally:
        await backend.aclose()
    streamed = "".join(c.delta for c in chunks)
    assert streamed == whole.text
    assert streamed.startswith("The batch pool runs on spot capacity.")
    assert len(chunks) > 3
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage == whole.usage
    assert whole.usage.completion_tokens > 0


async def test_length_and_upstream_errors_are_mapped(upstream):
    backend = OpenAICompatBackend(base_url=upstream, model="extractive")
    try:
        short = await backend.generate(chat(max_tokens=2))
        assert short.finish_reason == "length"
        missing = OpenAICompatBackend(base_url=upstream, model="no-such-model")
        with pytest.raises(NotFound, match="no-such-model"):
            await missing.generate(chat())
        with pytest.raises(NotFound):
            _ = [c async for c in missing.stream(chat())]
        await missing.aclose()
    finally:
        await backend.aclose()


async def test_unreachable_upstream_is_unavailable():
    backend = OpenAICompatBackend(base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(Unavailable) as info:
        await backend.generate(chat())
    assert info.value.retry_after_s is not None
    with pytest.raises(Unavailable):
        _ = [c async for c in backend.stream(chat())]
    await backend.aclose()


async def test_deadline_is_an_upstream_timeout(gateway, slow_backend):
    with gateway(backends={"slow": slow_backend(delay_s=0.5, tokens=2)}) as base:
        backend = OpenAICompatBackend(base_url=f"{base}/v1", model="slow", timeout_s=0.3)
        with pytest.raises(UpstreamTimeout):
            _ = [c async for c in backend.stream(chat())]
        with pytest.raises(UpstreamTimeout):
            await backend.generate(chat())
        await backend.aclose()


def test_gateway_in_front_of_gateway_with_the_openai_sdk(gateway, upstream):
    models = {"proxied": {"kind": "openai", "base_url": upstream, "model": "extractive"}}
    with gateway(models=models) as front:
        client = openai.OpenAI(base_url=f"{front}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="proxied", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        whole = client.chat.completions.create(model="proxied", messages=MESSAGES)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
