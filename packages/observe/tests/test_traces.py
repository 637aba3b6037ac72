"""Spans follow the GenAI conventions and join the caller's trace."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import serve_in_thread
from lanewise.observe import traces
from lanewise.observe.plugin import ObservePlugin
from lanewise.observe.record import RequestRecord
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
BODY = {"model": "scripted", "messages": [{"role": "user", "content": "tokens=5"}]}


def test_upstream_calls_get_the_gateway_span_as_parent(observed_gateway, spans):
    """Backends read ``traceparent`` from the request context to forward it upstream."""
    with observed_gateway() as (base, plugin):
        seen = plugin.scripted_backend_class.seen_traceparents
        seen.clear()
        httpx.post(f"{base}/v1/chat/completions", json=BODY, headers={"traceparent": TRACEPARENT})
        plugin.telemetry.tracing.flush()
    request = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert seen == [f"00-{CLIENT_TRACE}-{request.context.span_id:016x}-01"]


def test_spans_carry_genai_attributes_and_the_client_trace_id(
    observed_gateway, spans, read_summaries
):
    with observed_gateway() as (base, plugin):
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json=BODY,
            headers={"traceparent": TRACEPARENT, "x-request-id": "traced-1"},
        )
        assert r.status_code == 200
        summary = read_summaries(["traced-1"])["traced-1"][0]
        assert plugin.telemetry is not None
        assert plugin.telemetry.tracing is not None
        plugin.telemetry.tracing.flush()
    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.kind is SpanKind.SERVER)
    assert request.name == "chat scripted"
    generate = next(s for s in finished if s.attributes.get("lanewise.stage") == "generate")
    assert format(request.context.trace_id, "032x") == CLIENT_TRACE
    assert format(request.parent.span_id, "016x") == CLIENT_SPAN
    assert request.parent.is_remote
    assert generate.parent.span_id == request.context.span_id
    assert generate.context.trace_id == request.context.trace_id
    for span in (request, generate):
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.request.model"] == "scripted"
        assert span.attributes["gen_ai.usage.input_tokens"] == 7
        assert span.attributes["gen_ai.usage.output_tokens"] == 5
    assert request.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert request.attributes["lanewise.tenant"] == "default"
    assert request.attributes["http.response.status_code"] == 200
    assert summary["trace_id"] == CLIENT_TRACE
    # No prompt or completion text anywhere in the spans.
    for span in finished:
        for value in span.attributes.values():
            assert "tokens=5" not in str(value)
            assert "w0" not in str(value)


def test_a_malformed_traceparent_starts_a_new_trace(observed_gateway, spans):
    with observed_gateway() as (base, plugin):
        httpx.post(f"{base}/v1/chat/completions", json=BODY, headers={"traceparent": "00-zz-yy-01"})
        plugin.telemetry.tracing.flush()
    request = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert request.parent is None
    assert request.context.trace_id != int(CLIENT_TRACE, 16)


def test_no_exporter_no_spans(observed_gateway, spans, read_summaries, monkeypatch):
    """Without an exporter the lane creates no tracer, yet logs keep the client's trace id."""
    with observed_gateway() as (base, plugin):
        plugin.telemetry.tracing = None  # what an unconfigured exporter leaves behind
        httpx.post(
            f"{base}/v1/chat/completions",
            json=BODY,
            headers={"traceparent": TRACEPARENT, "x-request-id": "untraced"},
        )
        assert read_summaries(["untraced"])["untraced"][0]["trace_id"] == CLIENT_TRACE
    assert spans.get_finished_spans() == ()


class HeaderRecorder:
    """On the upstream gateway: the headers every request arrived with."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    @hookimpl(tryfirst=True)
    def lanewise_resolve_principal(self, headers: Any) -> None:
        self.seen.append({k.lower(): v for k, v in headers.items()})


@pytest.mark.parametrize("traced", [True, False])
def test_openai_upstream_receives_the_client_trace(
    traced, lanewise_settings, register_plugin, observe_env
):
    """client -> gateway (observe, openai backend) -> a second gateway: the upstream sees the
    client's trace id (parented on the gateway's span when spans are built, the client's
    own header when not) and its tracestate."""
    recorder = HeaderRecorder()
    upstream_app = create_app(
        lanewise_settings(models={"extractive": {"kind": "extractive"}}),
        plugin_manager=register_plugin(recorder, allowlist=["inference"]),
    )
    spans = InMemorySpanExporter()
    plugin = ObservePlugin(span_exporter=spans if traced else None)
    body = {"model": "up", "messages": [{"role": "user", "content": "The sky is blue."}]}
    headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=x"}
    with serve_in_thread(upstream_app) as upstream:
        models = {"up": {"kind": "openai", "base_url": f"{upstream}/v1", "model": "extractive"}}
        app = create_app(
            lanewise_settings(models=models),
            plugin_manager=register_plugin(plugin, allowlist=["inference"]),
        )
        with serve_in_thread(app) as base:
            for stream in (False, True):
                r = httpx.post(
                    f"{base}/v1/chat/completions",
                    json={**body, "stream": stream},
                    headers=headers,
                    timeout=30,
                )
                assert r.status_code == 200, r.text
            if traced:
                assert plugin.telemetry is not None
                assert plugin.telemetry.tracing is not None
                plugin.telemetry.tracing.flush()
    assert len(recorder.seen) == 2
    for seen in recorder.seen:
        version, trace_id, parent, flags = seen["traceparent"].split("-")
        assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "01")
        assert seen["tracestate"] == "vendor=x"
        if traced:
            servers = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
            assert parent in {f"{s.context.span_id:016x}" for s in servers}
        else:
            assert parent == CLIENT_SPAN


@given(
    st.integers(0, 2**192 - 1)
    | st.sampled_from([0, 1, 2**64 - 1, 2**64, (2**128 - 1) << 64, 2**192 - 1])
)
def test_started_traces_spell_their_ids_as_w3c_traceparent(bits):
    """The ids drawn for a request (one 192-bit draw) and the ``traceparent`` forwarded
    upstream agree, have their W3C widths and are never all zeros."""
    record = RequestRecord()
    with patch.object(traces, "_getrandbits", return_value=bits):
        header = traces.start_trace(record, None, 1.0)
    assert traces.TRACEPARENT_FULL.match(header)
    assert record.trace_id is not None
    assert record.span_id is not None
    assert traces.parse_traceparent(header) == (int(record.trace_id, 16), record.span_id, 1)
    assert int(record.trace_id, 16) != 0
    assert record.span_id != 0
    # A draw with an all-zero id gets the low bit of both ids set; any other is spelled as is.
    used = bits if bits >> 64 and bits & (2**64 - 1) else bits | 1 | 1 << 64
    assert record.trace_id == f"{used >> 64:032x}"
    assert record.span_id == used & (2**64 - 1)
    assert record.sampled


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.sampled_from(["00", "01"]))
def test_a_client_trace_keeps_its_id_and_sampling_decision(trace_id, span_id, flags):
    record = RequestRecord()
    header = traces.start_trace(record, f"00-{trace_id:032x}-{span_id:016x}-{flags}", 1.0)
    assert record.trace_id == f"{trace_id:032x}"
    assert record.parent_span_id == span_id
    assert record.sampled is (flags == "01")
    assert header == f"00-{trace_id:032x}-{record.span_id:016x}-{flags}"
