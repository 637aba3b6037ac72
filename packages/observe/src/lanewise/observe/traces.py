"""OpenTelemetry spans: one per request, one per pipeline stage, GenAI attribute names.

Spans are built after the request ended, on an exporter thread, from the
record's stage events (each carries its start and duration), so a request costs
the event loop a trace id and a deque append, and nothing at all when no
exporter is configured. A ``traceparent``
header from the client makes the request span its child; the W3C header for
upstream calls is put in the request context's attributes (``traceparent``)
for backends that forward it.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lanewise.core.errors import ConfigError
from lanewise.observe.logwriter import take
from lanewise.observe.record import RequestRecord
from lanewise.observe.settings import ObserveSettings
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

log = logging.getLogger("lanewise.observe.traces")
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
TRACEPARENT_FULL = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_PRIMITIVE = (str, bool, int, float)
EXPORT_BATCH = 512


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
            out[key] = tuple(value)
    return out


_RANDOM = random.Random()
os.register_at_fork(after_in_child=_RANDOM.seed)  # forked workers must not share ids


def start_trace(record: RequestRecord, traceparent: str | None, sample_ratio: float) -> str:
    """Give the record its trace and span ids; returns its ``traceparent`` for upstreams.

    One ``getrandbits`` draws both ids and one ``hex()`` spells them (``format`` with a
    width goes through the slower general formatter); no draw decides sampling at ratio
    1.0: this runs on the event loop for every request. Sampling follows the SDK's
    ``ParentBased(TraceIdRatioBased)``.
    """
    bits = _getrandbits(192)
    if not bits & _SPAN_MASK or not bits >> 64:  # all-zero ids are invalid (2^-64, 2^-128)
        bits |= _LOW_BITS
    ids = bits.to_bytes(24, "big").hex()  # the trace id's 32 digits, then the span id's 16
    record.span_id = bits & _SPAN_MASK
    parent = parse_traceparent(traceparent) if traceparent else None
    if parent is None:
        trace_id = record.trace_id = ids[:32]
        sampled = record.sampled = sample_ratio >= 1.0 or _RANDOM.random() < sample_ratio
    else:
        trace_int, record.parent_span_id, flags = parent
        sampled = record.sampled = bool(flags & 1)
        trace_id = record.trace_id = format(trace_int, "032x")
    return f"00-{trace_id}-{ids[32:]}-{'01' if sampled else '00'}"


_getrandbits = _RANDOM.getrandbits
_LOW_BITS = 1 | 1 << 64
"""Set in a draw whose trace or span id came out all zeros (still random in the rest)."""


class Tracing:
    """Spans for finished requests, built directly as the SDK's ``ReadableSpan``.

    Every timing is known when the request ends, so there is no live span to
    keep: the request path only appends the finished record to a bounded deque;
    a thread that wakes every ``interval_s`` assembles the request span and its
    stage spans from it and exports them in batches. That skips the tracer's
    per-span sampler, lock and attribute re-validation, and the SDK batch
    processor's per-span wake-up of its thread, which cost several times more
    than the spans themselves. Sampling follows the
    SDK's ``ParentBased(TraceIdRatioBased)``: a sampled caller's trace is always
    recorded, otherwise ``sample_ratio`` of new traces.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        sample_ratio: float,
        on_drop: Callable[[int], None],
        service_name: str = "lanewise-gateway",
        capacity: int = 2048,
        interval_s: float = 0.5,
    ) -> None:
        self.sample_ratio = sample_ratio
        self.resource = Resource.create({"service.name": service_name})
        self.scope = InstrumentationScope("lanewise.observe")
        self.exporter = CountingExporter(exporter, on_drop)
        self.on_drop = on_drop
        self.capacity = capacity
        self.interval_s = interval_s
        # Finished requests wait here (bounded: when the exporter stalls, requests are
        # dropped, not held); the exporter thread builds their spans and exports them.
        self.pending: deque[tuple[RequestRecord, Mapping[str, Any]]] = deque()
        self.feeder: Callable[[], object] | None = None
        """What queues finished requests here (the telemetry worker): run by :meth:`flush`."""
        self._busy = False
        self._export_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="lanewise-span-exporter", daemon=True
        )
        self._thread.start()

    def finish_request(self, record: RequestRecord, summary: Mapping[str, Any]) -> None:
        """Queue a finished request's spans (the record is not changed after this)."""
        if not record.sampled or record.trace_id is None or record.span_id is None:
            return
        if len(self.pending) < self.capacity:
            self.pending.append((record, summary))
        else:
            self.on_drop(1 + len(record.stage_events))

    def _run(self) -> None:
        # On a timer, like the log and usage writers: no wake-up per request.
        while not self._stop.wait(self.interval_s):
            self.export_pending()
        self.export_pending()

    def export_pending(self) -> None:
        """Build and export the spans of every queued request (the thread; the sidecar's
        main loop too, when a batch is waiting: it must not wait for a starved thread)."""
        with self._export_lock:
            self._export_pending()

    def _export_pending(self) -> None:
        self._busy = True
        try:
            spans: list[ReadableSpan] = []
            for record, summary in take(self.pending):
                try:
                    spans.extend(self.spans(record, summary))
                except Exception:
                    log.warning("spans of %s could not be built", record.request_id, exc_info=True)
                    self.on_drop(1)
                if len(spans) >= EXPORT_BATCH:
                    self.exporter.export(spans)
                    spans = []
            if spans:
                self.exporter.export(spans)
        finally:
            self._busy = False

    def spans(self, record: RequestRecord, summary: Mapping[str, Any]) -> list[ReadableSpan]:
        """The request span and one span per stage, nested by time.

        Straight-line code on purpose: it runs for every sampled request on the
        gateway's core, where each attribute lookup and temporary dict shows.
        """
        assert record.trace_id is not None
        assert record.span_id is not None
        trace_id = int(record.trace_id, 16)
        operation = record.operation or "chat"
        outcome = summary["outcome"]
        error_type = summary["error_type"]
        attrs: dict[str, Any] = {"http.request.method": record.method}
        if not record.unrouted:  # http.route is a route template; a refused path is none
            attrs["http.route"] = summary["route"]
        attrs["http.response.status_code"] = record.status
        attrs["lanewise.request_id"] = record.request_id
        attrs["lanewise.outcome"] = outcome
        model = record.model
        if model is not None:
            attrs["gen_ai.operation.name"] = operation
            attrs["gen_ai.request.model"] = model
            attrs["gen_ai.usage.input_tokens"] = record.tokens_in
            attrs["gen_ai.usage.output_tokens"] = record.tokens_out
        finish = summary["finish_reason"]
        if finish:
            attrs["gen_ai.response.finish_reasons"] = (finish,)
        for key, value in (
            ("lanewise.tenant", summary["tenant"]),
            ("lanewise.workflow", summary["workflow"]),
            ("lanewise.backend", record.backend),
            ("lanewise.prompt.template", record.prompt_name),
            ("lanewise.prompt.version", record.prompt_version),
            ("lanewise.index.version", record.index_version),
            ("lanewise.ttft_ms", summary["ttft_ms"]),
            ("lanewise.cost", summary["cost"]),
            ("error.type", error_type),
        ):
            if value is not None:
                attrs[key] = value
        context = SpanContext(trace_id, record.span_id, False, _SAMPLED)
        parent = (
            SpanContext(trace_id, record.parent_span_id, True, _SAMPLED)
            if record.parent_span_id is not None
            else None
        )
        start = int(record.started_wall * 1e9)
        resource, scope = self.resource, self.scope
        spans = [
            ReadableSpan(
                name=f"{operation} {model}" if model else f"{record.method} {record.path}",
                context=context,
                parent=parent,
                resource=resource,
                attributes=attrs,
                kind=SpanKind.SERVER,
                status=Status(StatusCode.ERROR, error_type) if outcome == "error" else _UNSET,
                start_time=start,
                end_time=start + int(record.duration_s * 1e9),
                instrumentation_scope=scope,
            )
        ]
        events = record.stage_events
        if len(events) > 1:
            events = sorted(events, key=_stage_order)
        parents: list[tuple[float, SpanContext]] = [(float("inf"), context)]
        getrandbits = _RANDOM.getrandbits
        for event in events:
            # Stages nest by time (retrieval's cache/embed/search run inside ``retrieve``).
            end = event.started_at + event.duration_s
            while len(parents) > 1 and parents[-1][0] < end:
                parents.pop()
            stage = event.stage
            stage_attrs = {"lanewise.stage": stage, **_attributes(event.attributes)}
            if stage == "generate":
                stage_attrs["gen_ai.operation.name"] = operation
                name = f"{operation} {stage_attrs.get('gen_ai.request.model') or model}"
                kind = SpanKind.CLIENT
            else:
                name, kind = stage, SpanKind.INTERNAL
            stage_context = SpanContext(trace_id, getrandbits(64) or 1, False, _SAMPLED)
            spans.append(
                ReadableSpan(
                    name=name,
                    context=stage_context,
                    parent=parents[-1][1],
                    resource=resource,
                    attributes=stage_attrs,
                    kind=kind,
                    status=_UNSET if event.ok else _ERROR,
                    start_time=int(event.started_at * 1e9),
                    end_time=int(end * 1e9),
                    instrumentation_scope=scope,
                )
            )
            parents.append((end, stage_context))
        return spans

    def flush(self, timeout: float = 10.0) -> bool:
        """Export what is queued now (tests, shutdown)."""
        if self.feeder is not None:
            self.feeder()
        deadline = time.monotonic() + timeout
        while self.pending or self._busy:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.005)
        return bool(self.exporter.force_flush(int(timeout * 1000)))

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(10.0)
        self.exporter.shutdown()


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SPAN_MASK = (1 << 64) - 1
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)


def _stage_order(event: Any) -> tuple[float, float]:
    return (event.started_at, -event.duration_s)


def parse_traceparent(value: str | None) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a valid W3C ``traceparent``, else None."""
    if not value:
        return None
    match = TRACEPARENT_FULL.match(value.strip().lower())
    if match is None:
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
    if not trace_id or not span_id or match.group(0).startswith("ff"):
        return None
    return trace_id, span_id, int(match.group(3), 16)


def configured_exporter(observe: ObserveSettings) -> SpanExporter | None:
    """The span exporter the settings name (the sidecar cannot be handed an object)."""
    named = [
        key
        for key in ("otlp_endpoint", "span_exporter", "spans_file")
        if getattr(observe, key) is not None
    ]
    if len(named) > 1:
        raise ConfigError(f"observe: set one span exporter, not {' and '.join(named)}")
    if observe.otlp_endpoint:
        return otlp_exporter(observe.otlp_endpoint)
    if observe.span_exporter:
        return imported_exporter(observe.span_exporter)
    if observe.spans_file is not None:
        return JsonLinesSpanExporter(observe.spans_file)
    return None


def imported_exporter(path: str) -> SpanExporter:
    """``module:callable``: the callable (a class, a factory) is called without arguments."""
    module_name, _, attribute = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
        exporter = factory()
    except Exception as exc:
        raise ConfigError(f"observe.span_exporter {path!r} could not be loaded: {exc}") from None
    if not isinstance(exporter, SpanExporter):
        raise ConfigError(f"observe.span_exporter {path!r} did not return a SpanExporter")
    return exporter


class JsonLinesSpanExporter(SpanExporter):
    """One JSON object per span and line (the SDK's ``to_json``), appended to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(text)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass
