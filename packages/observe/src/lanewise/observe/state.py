"""Other lanes' live state as Prometheus metrics, from ``lanewise_collect_state``.

The inference lane's breakers and in-flight calls, the ingest queue's depth and
governance's refusal counts live in those lanes; they answer the hook with
:class:`~lanewise.core.types.StateSample`s and know nothing of Prometheus. The
gateway's telemetry calls the hook once a second from a thread (never on a
request's path) and writes the samples here.

Multiprocess mode (``serve --workers N``) needs each series to say how the
worker processes' values combine; the sample's ``merge`` picks the gauge's mode:

- ``sum`` -> ``livesum``: each worker holds its own share (calls in flight on a
  replica); the scrape shows the gateway's total, and a worker that exited stops
  counting at once.
- ``max`` -> ``livemax``: every worker sees the same thing (a shared Celery queue)
  or the worst one matters (a replica's breaker, 2 = open, which each worker keeps
  for itself): the scrape shows the highest live value.

Counters are the source's cumulative per-process totals; the increase since the
last collection goes into a prometheus-client counter, which multiprocess mode sums
over every process that ever ran (a counter's usual meaning).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any, Literal

from lanewise.core.types import StateSample
from prometheus_client import REGISTRY, Counter, Gauge

NAME = re.compile(r"^lanewise_[a-z0-9_]+$")
LABEL = re.compile(r"^[a-z_][a-z0-9_]*$")
MODES: dict[str, Literal["livesum", "livemax"]] = {"sum": "livesum", "max": "livemax"}
MAX_SERIES = 5000
"""Series per process; past it new ones are dropped (a lane with unbounded labels)."""


class StateMetrics:
    """One per process, like the prometheus-client registry it adds metrics to."""

    def __init__(self, registry: Any = REGISTRY) -> None:
        self.registry = registry
        self.metrics: dict[str, tuple[tuple[Any, ...], Any]] = {}
        """name -> ((kind, merge, label names), metric)."""
        self.totals: dict[tuple[str, tuple[str, ...]], float] = {}
        self.children: dict[tuple[str, tuple[str, ...]], Any] = {}
        """Each series' prometheus-client child (``labels()`` locks and validates per call)."""
        self._lock = threading.Lock()

    def names(self) -> set[str]:
        """Every metric created so far, as named in the exposition."""
        with self._lock:
            return {
                name + "_total" if shape[0] == "counter" else name
                for name, (shape, _) in self.metrics.items()
            }

    def apply(self, samples: Iterable[StateSample]) -> int:
        """Write the samples; returns how many were refused (bad name, shape or cap)."""
        refused = 0
        with self._lock:
            for sample in samples:
                if not self._apply(sample):
                    refused += 1
        return refused

    def _apply(self, sample: StateSample) -> bool:
        name = sample.name.removesuffix("_total") if sample.kind == "counter" else sample.name
        names = tuple(sorted(sample.labels))
        shape = (sample.kind, sample.merge if sample.kind == "gauge" else None, names)
        found = self.metrics.get(name)
        if found is None:
            if not NAME.match(name) or not all(LABEL.match(n) for n in names):
                return False
            metric = self._create(name, sample, names)
            if metric is None:
                return False
            found = self.metrics[name] = (shape, metric)
        if found[0] != shape:
            return False  # one name, one shape: the first report fixed it
        values = tuple(str(sample.labels[n]) for n in names)
        series = (name, values)
        child = self.children.get(series)
        if child is None:
            if len(self.children) >= MAX_SERIES:
                return False
            child = self.children[series] = found[1].labels(*values) if names else found[1]
        if sample.kind == "gauge":
            child.set(sample.value)
            return True
        last = self.totals.get(series, 0.0)
        # A total below the last one: the source started over (counts from zero again).
        increase = sample.value - last if sample.value >= last else sample.value
        if increase > 0:
            child.inc(increase)
        self.totals[series] = sample.value
        return True

    def _create(self, name: str, sample: StateSample, names: tuple[str, ...]) -> Any:
        help_text = sample.help or name
        try:
            if sample.kind == "counter":
                return Counter(name, help_text, names, registry=self.registry)
            return Gauge(
                name,
                help_text,
                names,
                registry=self.registry,
                multiprocess_mode=MODES[sample.merge],
            )
        except (ValueError, KeyError):
            return None  # the name is taken (one of this lane's own metrics)


STATE = StateMetrics()
"""This process's lane-state metrics (every gateway app of the process shares them)."""
