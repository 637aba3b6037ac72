"""What the backends hand their upstreams and the pipeline: the trace context, the finish reason.

The upstream is a real second lanewise gateway; a plugin there records the headers
each request arrived with (``lanewise_resolve_principal`` sees them all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest
from lanewise.core.context import TRACEPARENT, TRACESTATE, RequestContext, request_scope
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import serve_in_thread
from lanewise.core.types import ChatRequest, Message, SamplingParams
from lanewise.inference.openai_compat import TRANSPORTS, OpenAICompatBackend

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "vendor=opaque,other=1"
CONTEXT = "The batch pool runs on spot capacity. The interactive pool is warm."


class HeaderRecorder:
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    @hookimpl(tryfirst=True)
    def lanewise_resolve_principal(self, headers: Mapping[str, str]) -> None:
        self.seen.append({k.lower(): v for k, v in headers.items()})


class UsageRecorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def lanewise_on_usage(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture
def upstream(
    lanewise_settings: Callable[..., Any], register_plugin: Callable[..., Any]
) -> Iterator[tuple[str, HeaderRecorder]]:
    recorder = HeaderRecorder()
    settings = lanewise_settings(models={"extractive": {"kind": "extractive"}})
    app = create_app(settings, plugin_manager=register_plugin(recorder, allowlist=["inference"]))
    with serve_in_thread(app) as base:
        yield f"{base}/v1", recorder


def chat(**sampling: Any) -> ChatRequest:
    return ChatRequest(
        model="upstream",
        messages=[
            Message(role="system", content=CONTEXT),
            Message(role="user", content="Where does the batch pool run?"),
        ],
        sampling=SamplingParams(**sampling),
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_openai_backend_forwards_the_request_trace_context(upstream, transport):
    base, recorder = upstream
    backend = OpenAICompatBackend(base_url=base, model="extractive", transport=transport)
    traced = RequestContext(request_id="r1", attributes={TRACEPARENT: PARENT, TRACESTATE: STATE})
    try:
        with request_scope(traced):
            _ = [c async for c in backend.stream(chat())]
            await backend.generate(chat())
        await backend.generate(chat())  # outside a request: nothing to forward
    finally:
        await backend.aclose()
    streamed, whole, untraced = recorder.seen
    for seen in (streamed, whole):
        assert seen["traceparent"] == PARENT
        assert seen["tracestate"] == STATE
    assert "traceparent" not in untraced
    assert "tracestate" not in untraced


def test_usage_event_carries_the_upstreams_finish_reason(
    upstream, lanewise_settings, register_plugin
):
    """openai backend -> upstream: stop and length, streamed and not, reach lanewise_on_usage."""
    base, _ = upstream
    usage = UsageRecorder()
    settings = lanewise_settings(
        models={"up": {"kind": "openai", "base_url": base, "model": "extractive"}}
    )
    app = create_app(settings, plugin_manager=register_plugin(usage, allowlist=["inference"]))
    asked = [(False, None), (True, None), (False, 2), (True, 2)]
    with serve_in_thread(app) as gateway:
        for stream, max_tokens in asked:
            body = {
                "model": "up",
                "stream": stream,
                "messages": [
                    {"role": "system", "content": CONTEXT},
                    {"role": "user", "content": "Where does the batch pool run?"},
                ],
                **({"max_tokens": max_tokens} if max_tokens else {}),
            }
            r = httpx.post(f"{gateway}/v1/chat/completions", json=body, timeout=30)
            assert r.status_code == 200, r.text
    assert [e.finish_reason for e in usage.events] == ["stop", "stop", "length", "length"]
