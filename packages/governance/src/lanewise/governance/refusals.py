"""Refusals by scope, counted per process and reported through ``lanewise_collect_state``.

A refusal is an event, but a per-process cumulative count is all a metric needs, and
keeping it here means no new event path through core: the telemetry lane reads the
totals once a second and turns the increase into its counter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from lanewise.core.types import StateSample

REFUSALS = "lanewise_budget_refusals"
HELP = "Model calls governance refused, by the refusing limit's scope and the reason"
Reason = str
"""``budget`` (a budget had no room), ``rate_limit`` (RPM/TPM) or ``store_unavailable``
(the shared counters were unreachable under a fail-closed budget)."""

_counts: dict[tuple[str, Reason], int] = {}
_lock = threading.Lock()


def count(scope: str, reason: Reason) -> None:
    with _lock:
        _counts[(scope, reason)] = _counts.get((scope, reason), 0) + 1


def refusal_state(configured: Iterable[tuple[str, Reason]] = ()) -> list[StateSample]:
    """Every count so far, and 0 for the ``configured`` (scope, reason) pairs not yet seen:
    a series that exists before its first refusal lets ``increase()`` count that one too."""
    with _lock:
        counts = {**dict.fromkeys(configured, 0), **_counts}
    return [
        StateSample(
            name=REFUSALS,
            kind="counter",
            value=float(n),
            labels={"scope": scope, "reason": reason},
            help=HELP,
        )
        for (scope, reason), n in counts.items()
    ]
