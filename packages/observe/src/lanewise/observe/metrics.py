"""Prometheus metrics: definitions, bounded labels and the ``/metrics`` exposition.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``lanewise serve --workers N`` sets it
for its workers), prometheus-client keeps each process's values in memory-mapped
files there and ``/metrics`` adds them up, so a scrape that lands on any worker
sees the whole gateway. Every label's values are bounded: routes, stages,
problem types and models come from configuration and code, tenants are capped
per process and users are labelled only when ``observe.metrics_user_labels``
asks for it (capped too); values past a cap count as ``other``.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

# ``*_created`` series double the exposition for nothing a dashboard uses (and
# multiprocess mode cannot produce them, so single- and multi-worker gateways
# would export different names).
disable_created_metrics()  # type: ignore[no-untyped-call]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER = "other"
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
RATE_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)

REQUESTS = Counter(
    "lanewise_requests",
    "Requests to /v1 routes by outcome (ok, rejected, error, client_disconnect)",
    ["route", "method", "status", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "lanewise_request_duration_seconds",
    "Time from request to the last byte of the response (or the disconnect)",
    ["route", "outcome"],
    buckets=LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "lanewise_stage_duration_seconds",
    "Duration of each pipeline stage (retrieve, cache, embed, search, prompt, generate, ...)",
    ["stage", "ok"],
    buckets=LATENCY_BUCKETS,
)
TTFT_SECONDS = Histogram(
    "lanewise_ttft_seconds",
    "Time to the first token of a model call",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
OUTPUT_TOKENS_PER_SECOND = Histogram(
    "lanewise_output_tokens_per_second",
    "Output tokens per second of generation, after the first token",
    ["model"],
    buckets=RATE_BUCKETS,
)
TOKENS = Counter(
    "lanewise_tokens",
    "Tokens by direction (input, output), tenant, model and prompt version",
    ["direction", "tenant", "model", "prompt_version", "user"],
)
COST = Counter("lanewise_cost", "Cost of requests (governance's pricing)", ["tenant", "model"])
ERRORS = Counter(
    "lanewise_errors", "Failed requests by problem type (RFC 9457 type)", ["type", "route"]
)
CACHE_LOOKUPS = Counter(
    "lanewise_cache_lookups",
    "Retrieval cache lookups by cache (embedding, result) and result (hit, miss)",
    ["cache", "result"],
)
INDEX_VERSION = Gauge(
    "lanewise_index_version",
    "Vector index version last served, per tenant",
    ["tenant"],
    multiprocess_mode="max",
)
INDEX_AGE_SECONDS = Gauge(
    "lanewise_index_age_seconds",
    "Age of the index version last served (since this gateway first saw it)",
    ["tenant"],
    multiprocess_mode="mostrecent",
)
STALE_INDEX_ANSWERS = Counter(
    "lanewise_stale_index_answers",
    "Answers served from an index older than the newest known one by more than the threshold",
    ["tenant"],
)
TOKEN_ANOMALIES = Counter(
    "lanewise_token_anomalies",
    "Times a prompt version's recent mean tokens per request reached the anomaly factor",
    ["prompt"],
)
TOKEN_RATIO = Gauge(
    "lanewise_token_ratio",
    "A prompt version's recent mean tokens per request over its trailing baseline",
    ["prompt"],
    multiprocess_mode="mostrecent",
)
TELEMETRY_DROPPED = Counter(
    "lanewise_telemetry_dropped",
    "Telemetry items dropped because a sink was full or down (logs, usage, traces)",
    ["sink"],
)
CELERY_TASKS = Counter("lanewise_celery_tasks", "Celery tasks by name and state", ["task", "state"])
CELERY_TASK_SECONDS = Histogram(
    "lanewise_celery_task_duration_seconds",
    "Celery task run time",
    ["task"],
    buckets=LATENCY_BUCKETS,
)

__all__ = ["REGISTRY", "LabelCap", "exposition", "mark_process_dead", "multiprocess_dir"]

HISTOGRAM_BOUNDS: dict[Any, tuple[float, ...]] = {
    metric: (*metric._upper_bounds[:-1], float("inf"))
    for metric in (
        REQUEST_SECONDS,
        STAGE_SECONDS,
        TTFT_SECONDS,
        OUTPUT_TOKENS_PER_SECOND,
        CELERY_TASK_SECONDS,
    )
}

METRIC_NAMES = (
    "lanewise_requests_total",
    "lanewise_request_duration_seconds",
    "lanewise_stage_duration_seconds",
    "lanewise_ttft_seconds",
    "lanewise_output_tokens_per_second",
    "lanewise_tokens_total",
    "lanewise_cost_total",
    "lanewise_errors_total",
    "lanewise_cache_lookups_total",
    "lanewise_index_version",
    "lanewise_index_age_seconds",
    "lanewise_stale_index_answers_total",
    "lanewise_token_anomalies_total",
    "lanewise_token_ratio",
    "lanewise_telemetry_dropped_total",
    "lanewise_celery_tasks_total",
    "lanewise_celery_task_duration_seconds",
)
"""Every metric this lane exports (as named in the exposition; histograms add suffixes)."""


class LabelCap:
    """Admit the first ``cap`` distinct values of a label; later ones become ``other``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if value is None:
            return ""
        if value in self.seen:
            return value
        with self._lock:
            if len(self.seen) < self.cap:
                self.seen.add(value)
                return value
        return OTHER


class Children:
    """``metric.labels(...)`` costs a lock and label validation each call; look it up once.

    Label values are bounded (capped or from configuration), so the cache is too.
    Values are turned to strings as prometheus-client would (``200``, ``True``).
    """

    def __init__(self) -> None:
        self.cache: dict[tuple[Any, ...], Any] = {}

    def __call__(self, metric: Any, *values: Any) -> Any:
        key = (metric, *values)
        child = self.cache.get(key)
        if child is None:
            labels = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
            child = self.cache[key] = metric.labels(*labels)
        return child


class Batch:
    """Increments gathered on the request path, folded into prometheus-client later.

    A prometheus-client update takes a lock (or an mmap write in multiprocess
    mode) per call, several per request; here a request costs a few dict
    updates, and :meth:`flush` applies the sums once a second and before every
    scrape. One thread at a time touches a batch (the telemetry worker, under its lock).
    """

    def __init__(self) -> None:
        self.children = Children()
        self.counts: dict[tuple[Any, ...], float] = {}
        self.histograms: dict[tuple[Any, ...], list[float]] = {}
        self.gauges: dict[tuple[Any, ...], float] = {}

    def inc(self, metric: Any, labels: tuple[Any, ...], amount: float = 1.0) -> None:
        key = (metric, labels)
        self.counts[key] = self.counts.get(key, 0.0) + amount

    def observe(self, metric: Any, labels: tuple[Any, ...], value: float) -> None:
        key = (metric, labels)
        cells = self.histograms.get(key)
        if cells is None:
            bounds = HISTOGRAM_BOUNDS[metric]
            cells = self.histograms[key] = [0.0] * (len(bounds) + 2)
        cells[bisect_left(HISTOGRAM_BOUNDS[metric], value)] += 1
        cells[-1] += value

    def set(self, metric: Any, labels: tuple[Any, ...], value: float) -> None:
        self.gauges[(metric, labels)] = value  # the last value before a flush wins

    def flush(self) -> None:
        counts, self.counts = self.counts, {}
        histograms, self.histograms = self.histograms, {}
        gauges, self.gauges = self.gauges, {}
        for (metric, labels), value in gauges.items():
            self.children(metric, *labels).set(value)
        for (metric, labels), amount in counts.items():
            self.children(metric, *labels).inc(amount)
        for (metric, labels), cells in histograms.items():
            child = self.children(metric, *labels)
            # prometheus-client keeps one (non-cumulative) value per bucket and a sum.
            for i, n in enumerate(cells[:-1]):
                if n:
                    child._buckets[i].inc(n)
            child._sum.inc(cells[-1])


class Immediate:
    """The batch interface, applied at once: for updates from threads other than the loop's."""

    def __init__(self, children: Children) -> None:
        self.children = children

    def inc(self, metric: Any, labels: tuple[Any, ...], amount: float = 1.0) -> None:
        self.children(metric, *labels).inc(amount)

    def observe(self, metric: Any, labels: tuple[Any, ...], value: float) -> None:
        self.children(metric, *labels).observe(value)

    def set(self, metric: Any, labels: tuple[Any, ...], value: float) -> None:
        self.children(metric, *labels).set(value)


FLUSHERS: list[Callable[[], None]] = []
"""Fold this process's gateways' pending updates in; called before each exposition."""


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric (all worker processes in multiprocess mode).

    It first folds in this process's pending updates (finished requests included).
    """
    for flush in list(FLUSHERS):
        flush()
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead() -> None:
    """Drop this process's live gauges from the shared directory when it exits."""
    if multiprocess_dir() is not None:
        _multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
