"""The one ``request.summary`` log line per request, built from its record.

Every field is always present (``None`` when it does not apply), so a query
over the logs never has to guess whether a field was dropped or never set.
No prompt or completion text is ever part of it.
"""

from __future__ import annotations

from typing import Any

from lanewise.observe.record import RequestRecord

SUMMARY_EVENT = "request.summary"
REQUIRED_FIELDS = (
    "request_id",
    "trace_id",
    "method",
    "route",
    "status",
    "outcome",
    "error_type",
    "finish_reason",
    "stream",
    "tenant",
    "user",
    "key_id",
    "workflow",
    "model",
    "operation",
    "backend",
    "prompt_template",
    "prompt_version",
    "index_version",
    "tokens_in",
    "tokens_out",
    "cost",
    "ttft_ms",
    "duration_ms",
    "stages_ms",
    "cache_hits",
    "cache_misses",
)


def finish_reason_of(record: RequestRecord, outcome: str) -> str | None:
    if record.finish_reason is not None:
        return record.finish_reason
    if outcome == "client_disconnect":
        return "cancelled"
    if outcome == "error" and record.model_calls:
        return "error"
    return None


def build_summary(record: RequestRecord, cost: Any = None) -> dict[str, Any]:
    outcome = record.outcome
    principal = record.principal
    error_type = record.error_type or record.failure
    return {
        "request_id": record.request_id,
        "trace_id": record.trace_id,
        "method": record.method,
        "route": record.route or record.path,
        "status": record.status,
        "outcome": outcome,
        "error_type": error_type,
        "finish_reason": finish_reason_of(record, outcome),
        "stream": record.stream,
        "tenant": principal.tenant if principal else None,
        "user": principal.user if principal else None,
        "key_id": principal.key_id if principal else None,
        "workflow": principal.workflow if principal else None,
        "model": record.model,
        "operation": record.operation,
        "backend": record.backend,
        "prompt_template": record.prompt_name,
        "prompt_version": record.prompt_version,
        "index_version": record.index_version,
        "tokens_in": record.tokens_in,
        "tokens_out": record.tokens_out,
        "cost": cost,
        "ttft_ms": None if record.ttft_s is None else round(record.ttft_s * 1e3, 3),
        "duration_ms": round(record.duration_s * 1e3, 3),
        "stages_ms": {name: round(s * 1e3, 3) for name, s in record.stages.items()},
        "cache_hits": record.cache_hits,
        "cache_misses": record.cache_misses,
    }
