"""Aggregate the usage table for one tenant over a time window."""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from lanewise.core.errors import InvalidRequest
from lanewise.observe.usage.schema import usage
from sqlalchemy import ColumnElement, Engine, func, select

GroupBy = Literal["tenant", "user", "workflow", "model", "prompt"]
GROUP_COLUMNS: dict[str, tuple[tuple[str, ColumnElement[Any]], ...]] = {
    "tenant": (("tenant", usage.c.tenant),),
    "user": (("user", usage.c.user_id),),
    "workflow": (("workflow", usage.c.workflow),),
    "model": (("model", usage.c.model),),
    "prompt": (("prompt", usage.c.prompt_name), ("prompt_version", usage.c.prompt_version)),
}
WINDOW_PATTERN = r"^([1-9][0-9]{0,5})([smhd])$"
_WINDOW = re.compile(WINDOW_PATTERN)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_S = 400 * 86400


def window_seconds(window: str) -> int:
    """``15m``, ``24h``, ``7d`` ... in seconds, at most 400 days (longer windows are
    capped: nothing older is kept); a bad value names the accepted form."""
    match = _WINDOW.match(window)
    if match is None:
        raise InvalidRequest(
            f"window must be a number and a unit s, m, h or d (e.g. 24h); got {window!r}",
            field="window",
        )
    return min(int(match.group(1)) * _UNIT_S[match.group(2)], MAX_WINDOW_S)


def usage_summary(
    engine: Engine, *, tenant: str, group_by: str, window: str, now: float | None = None
) -> dict[str, Any]:
    if group_by not in GROUP_COLUMNS:
        raise InvalidRequest(
            f"group_by must be one of: {', '.join(GROUP_COLUMNS)}; got {group_by!r}",
            field="group_by",
            allowed=list(GROUP_COLUMNS),
        )
    now = time.time() if now is None else now
    since = now - window_seconds(window)
    keys = GROUP_COLUMNS[group_by]
    input_tokens = func.coalesce(func.sum(usage.c.input_tokens), 0)
    output_tokens = func.coalesce(func.sum(usage.c.output_tokens), 0)
    statement = (
        select(
            *(column.label(name) for name, column in keys),
            func.count().label("calls"),
            func.count(func.distinct(usage.c.request_id)).label("requests"),
            input_tokens.label("input_tokens"),
            output_tokens.label("output_tokens"),
            func.sum(usage.c.cost).label("cost"),
        )
        # The tenant filter is not optional: it is how one tenant never sees another's rows.
        .where(usage.c.tenant == tenant, usage.c.ts >= since)
        .group_by(*(column for _, column in keys))
        .order_by((input_tokens + output_tokens).desc())
    )
    with engine.connect() as connection:
        rows = connection.execute(statement).mappings().all()
    data = []
    for row in rows:
        entry = {name: row[name] for name, _ in keys}
        entry.update(
            calls=int(row["calls"]),
            requests=int(row["requests"]),
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            total_tokens=int(row["input_tokens"]) + int(row["output_tokens"]),
            cost=None if row["cost"] is None else float(row["cost"]),
        )
        data.append(entry)
    return {
        "object": "usage",
        "tenant": tenant,
        "group_by": group_by,
        "window": window,
        "since": since,
        "until": now,
        "data": data,
    }
