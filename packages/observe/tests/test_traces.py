"""Spans follow the GenAI conventions and join the caller's trace."""

from __future__ import annotations

import httpx
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
