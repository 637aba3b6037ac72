"""One gateway's telemetry: turns finished request records into logs, metrics, spans, rows.

Nothing here may fail or stall a request: every entry point catches its own
errors (counted as ``lanewise_telemetry_dropped_total{sink="internal"}``) and
every sink with I/O behind it (log file, usage database, span exporter) sits
behind a bounded queue drained by a background thread.

With ``observe.sidecar`` the gateway's instance only records and hands each
finished record to :class:`~lanewise.observe.link.SidecarLink`; the sidecar
process runs another instance (no sidecar of its own) that does the processing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Any

import structlog
from lanewise.core.context import TRACEPARENT, TRACESTATE, RequestContext, ResponseOutcome
from lanewise.core.errors import ConfigError
from lanewise.core.settings import Settings
from lanewise.core.types import Principal, StageTiming, UsageEvent
from lanewise.observe import metrics as m
from lanewise.observe.link import SidecarLink
from lanewise.observe.logs import (
    add_feeder,
    configure_logging,
    emit_json_line,
    json_line_writer,
    remove_feeder,
    route_third_party_loggers,
    write_synchronously,
)
from lanewise.observe.logwriter import take
from lanewise.observe.multiproc import SERVED_ENV
from lanewise.observe.record import RECORD, RequestRecord
from lanewise.observe.settings import ObserveSettings
from lanewise.observe.sidecar import child_config
from lanewise.observe.signals import StaleIndexDetector, TokenAnomalyDetector
from lanewise.observe.state import STATE
from lanewise.observe.summary import SUMMARY_EVENT, build_summary
from lanewise.observe.traces import (
    Tracing,
    configured_exporter,
    start_trace,
    trace_id_from_header,
)
from lanewise.observe.usage.store import UsageReader, UsageWriter, make_engine
from lanewise.observe.wire import REQUEST, STAGE, USAGE, StandaloneStage, StandaloneUsage

log = structlog.get_logger("lanewise.request")
internal_log = logging.getLogger("lanewise.observe")
CACHE_KEYS = (("result", "lanewise.cache.result"), ("embedding", "lanewise.cache.embedding"))
OBSERVED_PREFIX = "/v1/"
UNROUTED = "unmatched"
"""The ``route`` label of requests no route took (404, 405)."""
WORKER_INTERVAL_S = 0.05
METRICS_INTERVAL_S = 1.0
STATE_INTERVAL_S = 1.0
"""How often lanes are asked for their state (``lanewise_collect_state``)."""
PENDING_MAX = 10_000
"""Finished requests waiting for the worker; past this they are dropped (counted)."""
SIDECAR_CLOSE_S = 10.0
"""At shutdown, how long the gateway waits for its sidecar to write everything out."""
USAGE_GRACE_S = 2.0
"""After a client disconnect, how long the summary waits for the cancelled model call's usage."""


def count_drop(sink: str, n: int = 1) -> None:
    # The metrics sink itself can fail (a full disk in multiprocess mode).
    with contextlib.suppress(Exception):
        m.TELEMETRY_DROPPED.labels(sink).inc(n)


def usage_database_url(settings: Settings | None, observe: ObserveSettings) -> str:
    if observe.usage_database_url:
        return observe.usage_database_url
    if settings is None:
        raise ValueError("observe.usage_database_url is needed without the gateway's settings")
    if settings.database_url:
        return settings.database_url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(settings.data_dir / 'usage.sqlite3').resolve()}"


def sidecar_mode(observe: ObserveSettings, span_exporter: Any) -> bool:
    """``observe.sidecar``; unset: on in ``lanewise serve``'s gateway processes, off where an
    app is built in-process (tests, the demo, Celery workers). An exporter object cannot
    cross to another process: passed in, it keeps the telemetry here."""
    if observe.sidecar is None:
        return span_exporter is None and os.environ.get(SERVED_ENV) == "1"
    if observe.sidecar and span_exporter is not None:
        raise ConfigError(
            "observe.sidecar: a span exporter object cannot be handed to the sidecar process; "
            "name it in observe.span_exporter ('module:callable') instead"
        )
    return observe.sidecar


class Telemetry:
    def __init__(
        self,
        settings: Settings | None,
        observe: ObserveSettings,
        *,
        span_exporter: Any = None,
        components: Any = None,
    ) -> None:
        self.observe = observe
        self.components = components
        """Core's Components: the argument of ``lanewise_collect_state``."""
        self._state_lock = threading.Lock()
        self._closed = False
        self.metrics = observe.metrics
        self.summaries = observe.summaries
        sidecar = sidecar_mode(observe, span_exporter)
        exporter = span_exporter if span_exporter is not None else configured_exporter(observe)
        tracing = observe.traces and exporter is not None
        if sidecar and exporter is not None:
            exporter.shutdown()  # built to check the settings: the sidecar makes its own
        self.tracing = (
            Tracing(
                exporter,
                sample_ratio=observe.trace_sample_ratio,
                on_drop=lambda n: count_drop("traces", n),
            )
            if tracing and exporter is not None and not sidecar
            else None
        )
        # With the sidecar the spans are built there; the ids and sampling stay here.
        self.sample_ratio = observe.trace_sample_ratio if tracing else None
        """Traces start here (ids for every request, forwarded upstream) when not None."""
        self.tenants = m.LabelCap(observe.metrics_tenant_cap)
        self.users = m.LabelCap(observe.metrics_user_cap)
        self.labels = m.LabelCap(500)
        self.children = m.Children()
        self.batch = m.Batch()
        """Metric updates of finished requests; only the worker (under ``_lock``) touches it."""
        self.immediate = m.Immediate(self.children)
        """Metric updates from anywhere else (events outside a request)."""
        self.stale = StaleIndexDetector(observe.stale_index_after_s)
        self.anomaly = TokenAnomalyDetector(
            factor=observe.anomaly_factor,
            window=observe.anomaly_window,
            baseline_min=observe.anomaly_baseline_min,
        )
        self.writer: UsageWriter | None = None
        self.usage_reader: UsageReader | None = None
        """With the sidecar: the usage table as ``GET /v1/usage`` reads it (the child writes)."""
        usage_url = usage_database_url(settings, observe) if observe.usage_store else None
        if usage_url is not None and sidecar:
            self.usage_reader = UsageReader(make_engine(usage_url))
        elif usage_url is not None:
            self.writer = UsageWriter(
                make_engine(usage_url),
                capacity=observe.usage_buffer,
                on_drop=lambda n: count_drop("usage", n),
            )
        # With the sidecar too: the gateway's own lines (warnings, uvicorn) go through the
        # writer thread, so a stalled sink (a pipe nobody reads) never blocks the loop.
        configure_logging(observe, on_drop=lambda: count_drop("logs"))
        # Finished requests wait here for the worker thread, which turns them into the
        # summary line, metrics, spans and usage rows in batches: the event loop pays a
        # deque append per request, and the batch runs with warm caches.
        self.pending: deque[RequestRecord | Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flushed_at = time.monotonic()
        self.link: SidecarLink | None = None
        """The sidecar that processes this gateway's records (then there is no worker)."""
        self._worker: threading.Thread | None = None
        if sidecar:
            self.link = SidecarLink(
                child_config(observe, usage_url, os.getpid()),
                capacity=observe.sidecar_buffer_bytes,
                on_drop=lambda n: count_drop("sidecar", n),
                cpus=observe.sidecar_cpus,
                nice=observe.sidecar_nice,
            )
            return
        self._worker = threading.Thread(target=self._run, name="lanewise-telemetry", daemon=True)
        self._worker.start()
        m.FLUSHERS.append(self.flush_metrics)
        add_feeder(self.drain)
        for sink in (self.tracing, self.writer):
            if sink is not None:
                sink.feeder = self.drain

    # -- request lifecycle (core's request observer: on the event loop) ---------------
    def request_started(self, context: RequestContext, scope: Any) -> None:
        """A routed request arrives (before core authenticates it)."""
        path = scope["path"]
        if not path.startswith(OBSERVED_PREFIX):
            return
        # Positional: the record's first six fields (this runs for every request).
        record = RequestRecord(
            context.request_id,
            scope["method"],
            path,
            scope.get("path_template") or path,
            perf_counter(),
            context.started_at,
        )
        attributes = context.attributes
        attributes[RECORD] = (self, record)
        traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        if self.sample_ratio is not None:
            forward = start_trace(record, traceparent, self.sample_ratio)
        elif traceparent is not None and (trace_id := trace_id_from_header(traceparent)):
            # No tracing here: still correlate logs with the caller's trace and pass
            # its context on to upstreams unchanged.
            record.trace_id = trace_id
            forward = traceparent
        else:
            return
        # For backends that forward the trace to upstreams.
        attributes["trace_id"] = record.trace_id
        attributes[TRACEPARENT] = forward
        if tracestate:
            attributes[TRACESTATE] = tracestate

    def request_ended(self, context: RequestContext, scope: Any) -> None:
        """The response is over (sent, failed or abandoned by the client)."""
        entry = context.attributes.get(RECORD)
        if entry is None:
            return
        record = entry[1]
        record.duration_s = perf_counter() - record.started
        response = record.response = context.response
        # Core sets ``user`` only once authentication succeeded; a refused request has
        # no tenant (the context's default principal is not one).
        user = scope.get("user")
        if isinstance(user, Principal):
            record.principal = user
        if (
            response is not None
            and response.stream
            and not response.body_done
            and not record.usage_events
        ):
            # A client disconnect cancels the model call; its usage event comes
            # from the cancelled task a moment later. Wait for it, but not forever.
            record.awaiting_usage = True
            asyncio.get_running_loop().call_later(USAGE_GRACE_S, self.complete, record, context)
            return
        self.complete(record, context)

    def usage_after_end(self, record: RequestRecord, context: RequestContext) -> None:
        """A usage event reached a record that waits for it (a client disconnect)."""
        if not record.completed:
            # The stage event of the same call follows at once; let it land first.
            asyncio.get_running_loop().call_soon(self.complete, record, context)

    def on_usage(self, event: UsageEvent) -> None:
        """A model call outside any request (ingest embeddings, CLI): metrics and a row."""
        if self.link is not None:
            self._send(USAGE, StandaloneUsage(event=event, at=time.time()))
        else:
            self.process_usage(event, time.time())

    def on_stage(self, event: StageTiming) -> None:
        """A stage outside any request (an ingest job, a CLI call)."""
        if self.link is not None:
            self._send(STAGE, StandaloneStage(event=event, at=time.time()))
        else:
            self.process_stage(event, time.time())

    def process_stage(self, event: StageTiming, at: float) -> None:
        """A stage outside any request: its metrics; an ingestion's index version."""
        if self.metrics:
            self._stage_metrics(self.immediate, event)
        if event.stage == "ingest":
            version = event.attributes.get("lanewise.index.version")
            tenant = event.attributes.get("lanewise.tenant")
            if isinstance(version, int) and isinstance(tenant, str):
                self._enqueue(lambda: self.stale.completed(tenant, version, at))

    def _stage_metrics(self, sink: m.Batch | m.Immediate, event: StageTiming) -> None:
        sink.observe(m.STAGE_SECONDS, (self.labels(event.stage), event.ok), event.duration_s)
        attrs = event.attributes
        if attrs:
            for cache, key in CACHE_KEYS:
                outcome = attrs.get(key)
                if outcome == "hit" or outcome == "miss":
                    sink.inc(m.CACHE_LOOKUPS, (cache, outcome))

    def unrouted(self, scope: Any, status: int, error_type: str | None) -> None:
        """A 404 or 405 that no route took (no request context, no observer call)."""
        request_id = str(scope.get("state", {}).get("request_id", ""))
        context = RequestContext(request_id=request_id)
        self.request_started(context, dict(scope, path_template=None))
        entry = context.attributes.get(RECORD)
        if entry is None:  # not a /v1 path
            return
        record = entry[1]
        record.response = ResponseOutcome(status=status, error_type=error_type, body_done=True)
        record.unrouted = True
        self.complete(record, None)

    def complete(self, record: RequestRecord, context: RequestContext | None) -> None:
        """Hand the finished record on (it is not changed after this)."""
        if record.completed:
            return
        record.completed = True
        if context is not None:
            cost = context.attributes.get("cost")
            if isinstance(cost, int | float):
                record.cost = float(cost)
            record.prompt_name = context.prompt_name
            record.prompt_version = context.prompt_version
            record.index_version = context.index_version
            record.model = context.model
        link = self.link
        if link is None:
            self._enqueue(record)
            return
        try:
            link.send(REQUEST, record)  # encoded now; written by the loop's timer
        except Exception:
            self._send_failed()

    def _enqueue(self, item: RequestRecord | Callable[[], None]) -> None:
        """For the worker thread (no sidecar; in the sidecar, its records)."""
        if len(self.pending) < PENDING_MAX:
            self.pending.append(item)
        else:
            count_drop("internal")
        if self._stop.is_set():  # the worker is gone (shutting down): process it here
            self.drain()

    def _send(self, kind: int, message: Any) -> None:
        assert self.link is not None
        try:
            self.link.send(kind, message)  # encoded now; written by the loop's timer
        except Exception:
            self._send_failed()

    @staticmethod
    def _send_failed() -> None:
        count_drop("internal")
        internal_log.warning("telemetry could not encode a record", exc_info=True)

    # -- the worker -----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(WORKER_INTERVAL_S):
            self.drain()
            if time.monotonic() - self._flushed_at >= METRICS_INTERVAL_S:
                self.flush_metrics()
        self.flush_metrics()

    def drain(self) -> None:
        """Process every finished request queued so far (the worker; flushes and scrapes)."""
        with self._lock:
            for item in take(self.pending):
                try:
                    if isinstance(item, RequestRecord):
                        self._complete(item)
                    else:
                        item()
                except Exception:
                    count_drop("internal")
                    internal_log.warning("telemetry of a request failed", exc_info=True)

    def flush_metrics(self) -> None:
        """Fold the batch into prometheus-client (the worker each second; every scrape)."""
        self.drain()
        with self._lock:
            self._flushed_at = time.monotonic()
            try:
                self.batch.flush()
            except Exception:
                count_drop("internal")
                internal_log.warning("metrics flush failed", exc_info=True)

    def _complete(self, record: RequestRecord) -> None:
        record.fold()
        cost = record.cost
        summary = build_summary(record, cost)
        principal = record.principal
        tenant = principal.tenant if principal else None
        now = time.time()
        if isinstance(record.index_version, int) and tenant is not None:
            self._index_signals(record, tenant, now)
        if record.model_calls and record.model is not None:
            self._token_signals(record)
        if self.metrics:
            self._metrics(record, summary, tenant, cost)
            for event in record.stage_events:
                self._stage_metrics(self.batch, event)
        if self.summaries:
            writer = json_line_writer()
            if writer is not None:  # JSON: render here, ~10x cheaper than via stdlib logging
                emit_json_line(writer, SUMMARY_EVENT, "info", "lanewise.request", dict(summary))
            else:
                log.info(SUMMARY_EVENT, **summary)
        if self.tracing is not None:
            self.tracing.finish_request(record, summary)
        if self.writer is not None and record.usage_events:
            self._rows(record, summary, cost, now)

    # -- sinks ------------------------------------------------------------------------
    def _metrics(
        self, record: RequestRecord, summary: dict[str, Any], tenant: str | None, cost: Any
    ) -> None:
        # A refused path is whatever a client sent: never a label value.
        route = UNROUTED if record.unrouted else self.labels(summary["route"])
        outcome = summary["outcome"]
        batch = self.batch
        batch.inc(m.REQUESTS, (route, record.method, record.status, outcome))
        batch.observe(m.REQUEST_SECONDS, (route, outcome), record.duration_s)
        if summary["error_type"] is not None:
            batch.inc(m.ERRORS, (self.labels(summary["error_type"]), route))
        if not record.model_calls or record.model is None:
            return
        model = self.labels(record.model)
        tenant_label = self.tenants(tenant)
        version = self.labels(record.prompt_version) if record.prompt_version else ""
        user = ""
        if self.observe.metrics_user_labels and record.principal is not None:
            user = self.users(record.principal.user)
        batch.inc(m.TOKENS, ("input", tenant_label, model, version, user), record.tokens_in)
        batch.inc(m.TOKENS, ("output", tenant_label, model, version, user), record.tokens_out)
        if isinstance(cost, int | float) and cost > 0:
            batch.inc(m.COST, (tenant_label, model), cost)
        if record.ttft_s is not None:
            batch.observe(m.TTFT_SECONDS, (model,), record.ttft_s)
            gen = (record.generate_s or 0.0) - record.ttft_s
            if record.tokens_out > 1 and gen > 0:
                batch.observe(m.OUTPUT_TOKENS_PER_SECOND, (model,), (record.tokens_out - 1) / gen)

    def _index_signals(self, record: RequestRecord, tenant: str, now: float) -> None:
        seen = self.stale.served(tenant, int(record.index_version), now)
        label = (self.tenants(tenant),)
        if self.metrics:
            self.batch.set(m.INDEX_VERSION, label, seen.version)
            self.batch.set(m.INDEX_AGE_SECONDS, label, seen.age_s)
        if seen.stale_by_s is not None:
            if self.metrics:
                self.batch.inc(m.STALE_INDEX_ANSWERS, label)
            log.warning(
                "index.stale",
                request_id=record.request_id,
                tenant=tenant,
                index_version=seen.version,
                newest_index_version=self.stale.tenants[tenant].newest,
                stale_by_s=round(seen.stale_by_s, 3),
            )

    def _token_signals(self, record: RequestRecord) -> None:
        key = (
            f"{record.prompt_name}@{record.prompt_version}"
            if record.prompt_name
            else f"model:{record.model}"
        )
        ratio, anomaly = self.anomaly.observe(key, record.tokens_in + record.tokens_out)
        if ratio is None:
            return
        label = (self.labels(key),)
        if self.metrics:
            self.batch.set(m.TOKEN_RATIO, label, ratio)
        if anomaly is not None:
            if self.metrics:
                self.batch.inc(m.TOKEN_ANOMALIES, label)
            log.warning(
                "tokens.anomaly",
                prompt=key,
                ratio=round(anomaly.ratio, 3),
                recent_mean_tokens=round(anomaly.recent_mean, 1),
                baseline_mean_tokens=round(anomaly.baseline_mean, 1),
                request_id=record.request_id,
            )

    def _rows(self, record: RequestRecord, summary: dict[str, Any], cost: Any, now: float) -> None:
        assert self.writer is not None
        # Plain tuples, built here: the writer keeps no events (nor the garbage
        # collector's work on them) while it waits for its next batch.
        self.writer.put(
            usage_rows(
                record.usage_events,
                now,
                cost,
                summary["outcome"],
                record.prompt_name,
                record.prompt_version,
            )
        )

    def process_usage(self, event: UsageEvent, at: float) -> None:
        if self.metrics:
            tenant = self.tenants(event.principal.tenant)
            model = self.labels(event.model)
            sink = self.immediate
            sink.inc(m.TOKENS, ("input", tenant, model, "", ""), event.usage.prompt_tokens)
            sink.inc(m.TOKENS, ("output", tenant, model, "", ""), event.usage.completion_tokens)
        if self.writer is not None:
            self.writer.put(usage_row(event, at, cost=None, status="ok"))

    # -- lifecycle ----------------------------------------------------------------------
    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        route_third_party_loggers()
        if self.link is not None:
            self.link.start()
        collector = None
        if self.metrics and self._state_reporters():
            collector = asyncio.get_running_loop().create_task(self._collect_state_every())
        try:
            yield
        finally:
            if collector is not None:
                collector.cancel()
            if self.link is not None:
                self.link.stop_timer()  # close() writes what is left, from its thread
            await asyncio.to_thread(self.close)

    def _state_reporters(self) -> bool:
        return self.components is not None and bool(
            self.components.hook.lanewise_collect_state.get_hookimpls()
        )

    async def _collect_state_every(self) -> None:
        # On a thread: a lane may do I/O to answer (the ingest queue's Redis), and a
        # slow answer must delay only the next collection, never the event loop.
        while True:
            await asyncio.sleep(STATE_INTERVAL_S)
            await asyncio.to_thread(self.collect_state)

    def collect_state(self) -> None:
        """Ask every lane for its state (``lanewise_collect_state``) and export it."""
        try:
            with self._state_lock:  # close() waits: no live gauge written after it
                if self._closed:
                    return
                answers = self.components.hook.lanewise_collect_state(components=self.components)
                refused = STATE.apply(sample for answer in answers for sample in answer or ())
        except Exception:
            count_drop("internal")
            internal_log.warning("collecting lane state failed", exc_info=True)
            return
        if refused:
            count_drop("state", refused)

    def close(self) -> None:
        if self.link is not None:
            self.link.close(SIDECAR_CLOSE_S)
        if self.usage_reader is not None:
            self.usage_reader.close()
        if self.flush_metrics in m.FLUSHERS:
            m.FLUSHERS.remove(self.flush_metrics)
            remove_feeder(self.drain)
            self._stop.set()
            if self._worker is not None:
                self._worker.join(10.0)
            self.flush_metrics()
        if self.writer is not None:
            self.writer.close()
        if self.tracing is not None:
            self.tracing.shutdown()
        with self._state_lock:
            self._closed = True
        m.mark_process_dead()
        # Logging stays up (uvicorn logs its own shutdown after the app's lifespan ends),
        # written synchronously from here on.
        write_synchronously()


def usage_rows(
    events: list[UsageEvent],
    now: float,
    cost: Any,
    status: str,
    prompt_name: str | None,
    prompt_version: str | None,
) -> list[tuple[Any, ...]]:
    """A request's rows; the request's cost goes on its last main model call."""
    main = [e for e in events if e.purpose == "request"]
    priced = main[-1] if main and isinstance(cost, int | float) else None
    return [
        usage_row(
            event,
            now,
            cost=float(cost) if event is priced else None,
            status=status,
            prompt_name=prompt_name,
            prompt_version=prompt_version,
        )
        for event in events
    ]


def usage_row(
    event: UsageEvent,
    now: float,
    *,
    cost: float | None,
    status: str,
    prompt_name: str | None = None,
    prompt_version: str | None = None,
) -> tuple[Any, ...]:
    """One row, its values in :data:`~lanewise.observe.usage.store.COLUMNS` order."""
    principal = event.principal
    return (
        now,
        event.request_id[:128],
        principal.tenant,
        principal.user,
        principal.key_id,
        principal.workflow,
        event.model,
        event.operation,
        event.purpose or "request",
        event.prompt_name or prompt_name,
        event.prompt_version or prompt_version,
        event.usage.prompt_tokens,
        event.usage.completion_tokens,
        cost,
        event.duration_s,
        event.status or status,
    )
