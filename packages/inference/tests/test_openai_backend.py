"""The ``openai`` backend against a real server: a second lanewise gateway (extractive)."""

from __future__ import annotations

import asyncio
import itertools

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lanewise.core.errors import ConfigError, NotFound, Unavailable, UpstreamTimeout
from lanewise.core.server import free_port
from lanewise.core.types import ChatRequest, Message, SamplingParams
from lanewise.inference.openai_compat import TRANSPORTS, OpenAICompatBackend
from lanewise.inference.openai_transport import split_lines

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


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    return request.param


@pytest.fixture
def upstream(gateway):
    with gateway(models={"extractive": {"kind": "extractive"}}) as base:
        yield f"{base}/v1"


async def test_stream_and_generate_against_a_real_upstream(upstream, transport):
    backend = OpenAICompatBackend(base_url=upstream, model="extractive", transport=transport)
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


async def test_length_and_upstream_errors_are_mapped(upstream, transport):
    backend = OpenAICompatBackend(base_url=upstream, model="extractive", transport=transport)
    try:
        short = await backend.generate(chat(max_tokens=2))
        assert short.finish_reason == "length"
        missing = OpenAICompatBackend(base_url=upstream, model="no-such-model", transport=transport)
        with pytest.raises(NotFound, match="no-such-model"):
            await missing.generate(chat())
        with pytest.raises(NotFound):
            _ = [c async for c in missing.stream(chat())]
        await missing.aclose()
    finally:
        await backend.aclose()


async def test_unreachable_upstream_is_unavailable(transport):
    backend = OpenAICompatBackend(
        base_url=f"http://127.0.0.1:{free_port()}/v1", transport=transport
    )
    with pytest.raises(Unavailable) as info:
        await backend.generate(chat())
    assert info.value.retry_after_s is not None
    with pytest.raises(Unavailable):
        _ = [c async for c in backend.stream(chat())]
    await backend.aclose()


async def test_deadline_is_an_upstream_timeout(gateway, slow_backend, transport):
    with gateway(backends={"slow": slow_backend(delay_s=0.5, tokens=2)}) as base:
        backend = OpenAICompatBackend(
            base_url=f"{base}/v1", model="slow", timeout_s=0.3, transport=transport
        )
        with pytest.raises(UpstreamTimeout):
            _ = [c async for c in backend.stream(chat())]
        with pytest.raises(UpstreamTimeout):
            await backend.generate(chat())
        await backend.aclose()


def test_gateway_in_front_of_gateway_with_the_openai_sdk(gateway, upstream, transport):
    proxied = {"kind": "openai", "base_url": upstream, "model": "extractive"}
    models = {"proxied": {**proxied, "transport": transport}}
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


def test_transport_option_is_checked_and_http2_keeps_httpx():
    with pytest.raises(ConfigError, match="transport"):
        OpenAICompatBackend(base_url="http://127.0.0.1:9/v1", transport="curl")
    assert OpenAICompatBackend(base_url="http://127.0.0.1:9/v1").transport == "aiohttp"


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
    ),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_split_lines_does_not_depend_on_where_chunks_are_cut(lines, eol, cuts):
    data = "".join(line + eol for line in lines).encode()
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]

    async def collect() -> list[str]:
        async def source():
            for chunk in chunks:
                yield chunk

        return [line async for line in split_lines(source())]

    assert asyncio.run(collect()) == lines


async def test_request_is_sent_again_when_the_server_closed_the_pooled_connection(transport):
    """A real socket server that answers once per connection, then hangs up on the
    next request without a byte: what a keep-alive timer firing at reuse looks like."""
    body = (
        b'{"choices":[{"message":{"content":"again"},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":1}}'
    )
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            for answered in (False, True):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(h.split(b":")[1])
                    for h in head.lower().split(b"\r\n")
                    if h.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if answered:
                    break
                writer.write(answer)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the client closed its pool
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = OpenAICompatBackend(base_url=f"http://127.0.0.1:{port}/v1", transport=transport)
    try:
        texts = [(await backend.generate(chat())).text for _ in range(3)]
    finally:
        await backend.aclose()
        server.close()
        await server.wait_closed()
    assert texts == ["again"] * 3
    assert connections == 3
