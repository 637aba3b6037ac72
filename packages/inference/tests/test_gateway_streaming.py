"""Gateway streaming: keep-alive comments and cancellation on client disconnect."""

from __future__ import annotations

import httpx
from lanewise.core.types import ChatChunk

BODY = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "go"}]}


def test_keepalive_comments_fill_silent_gaps(gateway, slow_backend):
    backend = slow_backend(delay_s=0.3, tokens=3)
    with (
        gateway(backends={"slow": backend}, gateway={"sse_keepalive_s": 0.05}) as base,
        httpx.stream("POST", f"{base}/v1/chat/completions", json=BODY, timeout=30) as response,
    ):
        lines = [line for line in response.iter_lines() if line]
    assert ": keep-alive" in lines
    data = [line for line in lines if line.startswith("data: ")]
    assert data[-1] == "data: [DONE]"
    assert backend.outcome == "finished"


def test_client_disconnect_cancels_the_backend_stream(gateway, slow_backend):
    backend = slow_backend(delay_s=0.05, tokens=10_000)
    with gateway(backends={"slow": backend}) as base:
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=BODY, timeout=30) as r:
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: {") and '"t' in line:
                    seen += 1
                if seen == 3:
                    break
        # Leaving the block closes the connection mid-stream.
        assert backend.ended.wait(timeout=10), "the backend stream was never stopped"
        emitted_at_stop = backend.emitted
    assert backend.outcome in {"cancelled", "closed"}
    assert emitted_at_stop < 200  # stopped near the disconnect, not after all 10 000 tokens


def test_backend_without_finish_reason_still_ends_with_stop(gateway, slow_backend):
    class Bare(slow_backend):
        async def stream(self, request):
            yield ChatChunk(delta="hi")

    with gateway(backends={"bare": Bare()}) as base:
        body = {**BODY, "model": "bare"}
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: {")]
    assert '"finish_reason":"stop"' in lines[-1]


def test_openai_sdk_ignores_keepalive_comments(gateway, slow_backend):
    import openai

    backend = slow_backend(delay_s=0.2, tokens=3)
    with gateway(backends={"slow": backend}, gateway={"sse_keepalive_s": 0.05}) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "go"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "t0 t1 t2 "
