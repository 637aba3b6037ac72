"""The official ``openai`` SDK (sync, async, streaming) against a real gateway."""

from __future__ import annotations

import httpx
import openai
import pytest

QUESTION = "Where does the batch pool run?"
CONTEXT = (
    "The interactive pool is warm and never scales to zero. "
    "The batch pool runs on spot capacity. Spot replicas can vanish at any time."
)
MESSAGES = [
    {"role": "system", "content": CONTEXT},
    {"role": "user", "content": QUESTION},
]


@pytest.fixture
def base_url(gateway):
    with gateway(models={"extractive": {"kind": "extractive", "max_tokens": 64}}) as base:
        yield base


def test_sync_chat_completion(base_url):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(model="extractive", messages=MESSAGES)
    choice = completion.choices[0]
    assert choice.message.content.startswith("The batch pool runs on spot capacity.")
    assert choice.finish_reason == "stop"
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_sync_streaming_with_usage(base_url):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="extractive",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert text.startswith("The batch pool runs on spot capacity.")
    assert [f for f in finishes if f] == ["stop"]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


async def test_async_streaming_respects_max_tokens(base_url):
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(
        model="extractive", messages=MESSAGES, stream=True, max_tokens=2
    )
    pieces, finish = [], None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces).split() == ["The", "batch"]
    assert finish == "length"
    await client.close()


async def test_async_legacy_completions(base_url):
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    completion = await client.completions.create(
        model="extractive", prompt=CONTEXT + " " + QUESTION, max_tokens=40
    )
    assert completion.object == "text_completion"
    assert "batch pool runs on spot capacity" in completion.choices[0].text
    stream = await client.completions.create(
        model="extractive",
        prompt=CONTEXT + " " + QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    )
    events = [event async for event in stream]
    assert "".join(e.choices[0].text for e in events if e.choices) == completion.choices[0].text
    assert events[-1].usage.completion_tokens == completion.usage.completion_tokens
    await client.close()


def test_max_tokens_above_the_model_limit_is_a_400_naming_the_field(base_url):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="extractive", messages=MESSAGES, max_tokens=65)
    body = info.value.response.json()
    assert body["field"] == "max_tokens"
    assert body["limit"] == 64


def test_unknown_model_is_404_listing_models(base_url):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert info.value.response.json()["available_models"] == ["extractive"]


def test_models_say_the_default_model_is_extractive(gateway):
    with gateway() as base:  # no [models] table: every default backend
        models = openai.OpenAI(base_url=f"{base}/v1", api_key="unused").models.list()
        raw = httpx.get(f"{base}/v1/models").json()["data"]
    assert [m.id for m in models.data] == ["extractive"]
    assert raw[0]["lanewise"]["kind"] == "extractive"
    assert raw[0]["lanewise"]["generative"] is False


def test_priority_header_can_lower_but_not_raise(gateway):
    import hashlib

    key = "batch-key"
    api_keys = [
        {"sha256": hashlib.sha256(key.encode()).hexdigest(), "tenant": "t", "priority": "batch"}
    ]
    with gateway(gateway={"api_keys": api_keys}) as base:
        body = {"model": "extractive", "messages": MESSAGES}
        auth = {"authorization": f"Bearer {key}"}
        ok = httpx.post(
            f"{base}/v1/chat/completions",
            json=body,
            headers={**auth, "x-lanewise-priority": "batch"},
        )
        up = httpx.post(
            f"{base}/v1/chat/completions",
            json=body,
            headers={**auth, "x-lanewise-priority": "interactive"},
        )
    assert ok.status_code == 200
    assert up.status_code == 400
    assert up.json()["field"] == "x-lanewise-priority"
