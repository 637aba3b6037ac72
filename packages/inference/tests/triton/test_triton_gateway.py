"""End to end: HTTP -> lanewise gateway -> [models.tri] kind="triton" -> tritonserver."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import serve_in_thread
from lanewise.inference.triton.server import TritonServer

from .conftest import Events


@pytest.fixture
def gateway(triton_server: TritonServer, lanewise_settings: Callable[..., Any]) -> Iterator[str]:
    settings = lanewise_settings(
        models={"tri": {"kind": "triton", "url": triton_server.grpc_url, "max_tokens": 16}}
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


def data_events(lines: Iterator[str]) -> Iterator[Any]:
    for line in lines:
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            yield payload if payload == "[DONE]" else json.loads(payload)


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "tri", "messages": [{"role": "user", "content": text}], **extra}


def test_chat_completion_through_the_gateway(gateway: str) -> None:
    r = httpx.post(f"{gateway}/v1/chat/completions", json=body("hello triton"), timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()
    content = out["choices"][0]["message"]["content"]
    assert len(content.split()) == 16  # the model's configured max_tokens
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 16
    assert out["usage"]["prompt_tokens"] > 0


def test_streamed_chat_completion_with_usage(gateway: str) -> None:
    payload = body("stream it", stream=True, max_tokens=6, stream_options={"include_usage": True})
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=payload, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(data_events(r.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e.get("choices")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert len(text.split()) == 6
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    usage = [e for e in events[:-1] if e.get("usage")]
    assert usage[-1]["usage"]["completion_tokens"] == 6


def test_error_mid_stream_ends_with_an_sse_error_event(gateway: str) -> None:
    payload = body("go <lanewise:fail-midstream> go", stream=True, max_tokens=40)
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=payload, timeout=30) as r:
        events = list(data_events(r.iter_lines()))
    errors = [e for e in events if isinstance(e, dict) and "error" in e]
    assert len(errors) == 1
    assert errors[0] is events[-1] or (events[-1] == "[DONE]" and errors[0] is events[-2])
    assert "mid-stream" in errors[0]["error"]["message"]
    assert errors[0]["error"]["code"] == 502


def test_client_disconnect_cancels_the_triton_request(gateway: str, triton_events: Events) -> None:
    request_id = f"disc-{uuid.uuid4().hex[:10]}"
    payload = body("a very long story", stream=True, max_tokens=4000)
    with httpx.stream(
        "POST",
        f"{gateway}/v1/chat/completions",
        json=payload,
        headers={"x-request-id": request_id},
        timeout=30,
    ) as r:
        assert r.status_code == 200
        seen = 0
        for event in data_events(r.iter_lines()):
            if isinstance(event, dict) and event.get("choices", [{}])[0].get("delta", {}).get(
                "content"
            ):
                seen += 1
            if seen == 3:
                break  # leaving the block closes the connection mid-stream
    event = triton_events.wait_for(request_id)
    assert event["outcome"] == "cancelled"
    assert event["tokens"] < 4000


def test_readyz_and_models_report_the_triton_backend(gateway: str) -> None:
    ready = httpx.get(f"{gateway}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["model:tri"] == "ok"
    models = httpx.get(f"{gateway}/v1/models", timeout=10).json()["data"]
    tri = next(m for m in models if m["id"] == "tri")
    assert tri["lanewise"]["backend"] == "triton"
    assert tri["lanewise"]["layout"] == "ensemble"


def test_readyz_names_a_dead_triton(
    lanewise_settings: Callable[..., Any], triton_factory: Callable[[], TritonServer]
) -> None:
    server = triton_factory()
    settings = lanewise_settings(models={"tri": {"kind": "triton", "url": server.grpc_url}})
    with serve_in_thread(create_app(settings)) as url:
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        server.kill()
        ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["model:tri"]
    assert server.grpc_url in ready.json()["checks"]["model:tri"]


class UsageRecorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def lanewise_on_usage(self, event: Any) -> None:
        self.events.append(event)


def test_usage_events_carry_the_finish_reason(
    triton_server: TritonServer,
    lanewise_settings: Callable[..., Any],
    register_plugin: Callable[..., Any],
) -> None:
    """Unary and streamed, cut by max_tokens or by a stop string: the usage event says which."""
    usage = UsageRecorder()
    settings = lanewise_settings(
        models={"tri": {"kind": "triton", "url": triton_server.grpc_url, "max_tokens": 4}}
    )
    app = create_app(settings, plugin_manager=register_plugin(usage, allowlist=["inference"]))
    with serve_in_thread(app) as url:
        first = httpx.post(f"{url}/v1/chat/completions", json=body("x"), timeout=30).json()
        word = first["choices"][0]["message"]["content"].split()[1]
        for stream in (False, True):
            for extra in ({}, {"stop": [word]}):
                payload = body("x", stream=stream, **extra)
                r = httpx.post(f"{url}/v1/chat/completions", json=payload, timeout=30)
                assert r.status_code == 200, r.text
    reasons = [e.finish_reason for e in usage.events]
    assert reasons == ["length", "length", "stop", "length", "stop"]
