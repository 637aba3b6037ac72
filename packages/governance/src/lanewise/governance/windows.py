"""Budget windows: fixed UTC buckets, so every replica and the ledger agree on them."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from lanewise.governance.settings import Window

_FIXED_S = {"minute": 60, "hour": 3600, "day": 86400}


def bucket(window: Window, now: float) -> tuple[float, float]:
    """``(start, end)`` of the bucket holding ``now``; ``end`` is ``inf`` for lifetime."""
    if window == "lifetime":
        return 0.0, math.inf
    if window == "month":
        day = datetime.fromtimestamp(now, UTC)
        start = datetime(day.year, day.month, 1, tzinfo=UTC)
        end = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=UTC)
        return start.timestamp(), end.timestamp()
    size = _FIXED_S[window]
    first = math.floor(now / size) * size
    return float(first), float(first + size)


def bucket_id(window: Window, now: float) -> str:
    start, _ = bucket(window, now)
    return "all" if window == "lifetime" else str(int(start))
