"""Signals conventional metrics miss: stale index answers and token anomalies.

Both are per process and cheap (a dict lookup and a few additions per request);
each raises a log event and a metric, once per episode rather than per request.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class IndexState:
    newest: int
    newest_seen_at: float
    first_seen: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IndexObservation:
    version: int
    age_s: float
    """How long this gateway has known the served version."""
    stale_by_s: float | None
    """How long a newer version has been available while this one was served, when stale."""


class StaleIndexDetector:
    """A tenant's answers come from an index older than the newest one by more than a threshold.

    The newest version is the highest this process has seen, from answers or
    from ingestion stage events (``stage == "ingest"`` with ``lanewise.index.version``).
    """

    MAX_TENANTS = 10_000

    def __init__(self, threshold_s: float) -> None:
        self.threshold_s = threshold_s
        self.tenants: dict[str, IndexState] = {}

    def completed(self, tenant: str, version: int, now: float) -> None:
        state = self.tenants.get(tenant)
        if state is None:
            if len(self.tenants) >= self.MAX_TENANTS:
                return
            self.tenants[tenant] = IndexState(version, now, {version: now})
            return
        state.first_seen.setdefault(version, now)
        if version > state.newest:
            state.newest, state.newest_seen_at = version, now
            # Versions older than the served ones are only needed for the age of
            # answers still in flight; keep the map small.
            if len(state.first_seen) > 64:
                for old in sorted(state.first_seen)[:-32]:
                    del state.first_seen[old]

    def served(self, tenant: str, version: int, now: float) -> IndexObservation:
        self.completed(tenant, version, now)
        state = self.tenants.get(tenant)
        if state is None:
            return IndexObservation(version, 0.0, None)
        age = now - state.first_seen.get(version, now)
        stale_by = None
        if version < state.newest and now - state.newest_seen_at > self.threshold_s:
            stale_by = now - state.newest_seen_at
        return IndexObservation(version, age, stale_by)


@dataclass(slots=True)
class _Series:
    recent: deque[int]
    baseline_n: int = 0
    baseline_sum: int = 0
    alerting: bool = False


@dataclass(frozen=True, slots=True)
class Anomaly:
    key: str
    ratio: float
    recent_mean: float
    baseline_mean: float


class TokenAnomalyDetector:
    """A prompt version's mean tokens per request over its last ``window`` requests ≥ ``factor``
    times the mean of all its earlier requests (needs ``baseline_min`` of those first).

    Reports the start of an episode once; another report needs the ratio to drop
    below the factor first.
    """

    MAX_KEYS = 1_000

    def __init__(self, *, factor: float, window: int, baseline_min: int) -> None:
        self.factor = factor
        self.window = window
        self.baseline_min = baseline_min
        self.series: dict[str, _Series] = {}

    def observe(self, key: str, tokens: int) -> tuple[float | None, Anomaly | None]:
        """Add one request; return the current ratio (None without a baseline) and a new anomaly."""
        series = self.series.get(key)
        if series is None:
            if len(self.series) >= self.MAX_KEYS:
                return None, None
            series = self.series[key] = _Series(deque(maxlen=self.window))
        if len(series.recent) == self.window:
            series.baseline_n += 1
            series.baseline_sum += series.recent[0]
        series.recent.append(tokens)
        if series.baseline_n < self.baseline_min or series.baseline_sum <= 0:
            return None, None
        baseline = series.baseline_sum / series.baseline_n
        recent = sum(series.recent) / len(series.recent)
        ratio = recent / baseline
        if ratio < self.factor:
            series.alerting = False
            return ratio, None
        if series.alerting:
            return ratio, None
        series.alerting = True
        return ratio, Anomaly(key, ratio, recent, baseline)
