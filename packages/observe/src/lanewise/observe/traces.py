"""OpenTelemetry spans: one per request, one per pipeline stage, GenAI attribute names.

Spans are built when the request ends, from the record's stage events (each
carries its start and duration), so a request costs nothing in tracing until
then, and nothing at all when no exporter is configured. A ``traceparent``
header from the client makes the request span its child; the W3C header for
upstream calls is put in the request context's attributes (``traceparent``)
for backends that forward it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lanewise.core.types import StageTiming
from lanewise.observe.record import RequestRecord
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("lanewise.observe.traces")
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_PROPAGATOR = TraceContextTextMapPropagator()
_PRIMITIVE = (str, bool, int, float)


def trace_id_from_header(value: str | None) -> str | None:
    """The trace id of a well-formed W3C ``traceparent`` (all-zero ids are invalid)."""
    if not value:
        return None
    match = TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return match.group(1)


class CountingExporter(SpanExporter):
    """Count spans an exporter failed to deliver; never raise into the SDK."""

    def __init__(self, inner: SpanExporter, on_drop: Callable[[int], None]) -> None:
        self.inner = inner
        self.on_drop = on_drop

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:
            log.warning("span exporter failed; %d spans dropped", len(spans), exc_info=True)
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.on_drop(len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def otlp_exporter(endpoint: str) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )
    except ImportError:
        from lanewise.core.errors import ConfigError

        raise ConfigError(
            "observe.otlp_endpoint needs the OTLP exporter: pip install 'lanewise-observe[otlp]'"
        ) from None
    exporter: SpanExporter = OTLPSpanExporter(endpoint=endpoint)
    return exporter


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """Only what OpenTelemetry accepts: primitives and lists of one primitive type."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, _PRIMITIVE):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
    return out


class Tracing:
    def __init__(
        self,
        exporter: SpanExporter,
        *,
        sample_ratio: float,
        on_drop: Callable[[int], None],
        service_name: str = "lanewise-gateway",
    ) -> None:
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
            resource=Resource.create({"service.name": service_name}),
        )
        # The batch processor's queue is bounded (2048 spans): when the exporter
        # stalls, spans are dropped rather than held or waited for.
        self.provider.add_span_processor(BatchSpanProcessor(CountingExporter(exporter, on_drop)))
        self.tracer = self.provider.get_tracer("lanewise.observe")

    def start_request(self, record: RequestRecord, headers: Mapping[str, str]) -> None:
        parent = _PROPAGATOR.extract(headers) if "traceparent" in headers else None
        span = self.tracer.start_span(
            f"{record.method} {record.path}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=int(record.started_wall * 1e9),
        )
        record.span = span
        ctx = span.get_span_context()
        record.trace_id = format(ctx.trace_id, "032x")

    def traceparent(self, record: RequestRecord) -> str | None:
        if record.span is None:
            return None
        ctx = record.span.get_span_context()
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"

    def finish_request(self, record: RequestRecord, summary: Mapping[str, Any]) -> None:
        span = record.span
        if span is None:
            return
        operation = record.operation or "chat"
        if record.model:
            span.update_name(f"{operation} {record.model}")
        attrs: dict[str, Any] = {
            "http.request.method": record.method,
            "http.route": summary["route"],
            "http.response.status_code": record.status,
            "gen_ai.operation.name": operation,
            "lanewise.request_id": record.request_id,
            "lanewise.outcome": summary["outcome"],
            "gen_ai.usage.input_tokens": record.tokens_in,
            "gen_ai.usage.output_tokens": record.tokens_out,
        }
        optional = {
            "gen_ai.request.model": record.model,
            "gen_ai.response.finish_reasons": (
                [summary["finish_reason"]] if summary["finish_reason"] else None
            ),
            "lanewise.tenant": summary["tenant"],
            "lanewise.workflow": summary["workflow"],
            "lanewise.backend": record.backend,
            "lanewise.prompt.template": record.prompt_name,
            "lanewise.prompt.version": record.prompt_version,
            "lanewise.index.version": record.index_version,
            "lanewise.ttft_ms": summary["ttft_ms"],
            "lanewise.cost": summary["cost"],
            "error.type": summary["error_type"],
        }
        attrs.update({k: v for k, v in optional.items() if v is not None})
        span.set_attributes(_attributes(attrs))
        if summary["outcome"] == "error":
            span.set_status(Status(StatusCode.ERROR, summary["error_type"] or None))
        parents: list[tuple[float, Any]] = [(float("inf"), span)]
        for event in sorted(record.stage_events, key=lambda e: (e.started_at, -e.duration_s)):
            parents = self._stage_span(record, event, parents)
        span.end(end_time=int((record.started_wall + record.duration_s) * 1e9))

    def _stage_span(
        self, record: RequestRecord, event: StageTiming, parents: list[tuple[float, Any]]
    ) -> list[tuple[float, Any]]:
        # Stages nest by time (retrieval's cache/embed/search run inside ``retrieve``).
        end = event.started_at + event.duration_s
        while len(parents) > 1 and parents[-1][0] < end:
            parents.pop()
        attrs = {"lanewise.stage": event.stage, **event.attributes}
        name = event.stage
        if event.stage == "generate":
            attrs["gen_ai.operation.name"] = record.operation or "chat"
            model = attrs.get("gen_ai.request.model") or record.model
            name = f"{attrs['gen_ai.operation.name']} {model}"
        span = self.tracer.start_span(
            name,
            context=trace.set_span_in_context(parents[-1][1]),
            kind=SpanKind.CLIENT if event.stage == "generate" else SpanKind.INTERNAL,
            start_time=int(event.started_at * 1e9),
            attributes=_attributes(attrs),
        )
        if not event.ok:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=int(end * 1e9))
        return [*parents, (end, span)]

    def flush(self) -> None:
        self.provider.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()
