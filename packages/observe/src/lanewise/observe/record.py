"""What the observe lane learns about one request while it runs.

The middleware creates a :class:`RequestRecord` and puts it in a context
variable; ``lanewise_on_usage`` / ``lanewise_on_stage`` events, which core
emits inside the request (and inside the streaming tasks it starts, which
copy the context), add to it. The record is plain data: turning it into a log
line, metrics, spans and usage rows happens once, when the request ends.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from lanewise.core.context import current_request
from lanewise.core.types import Principal, StageTiming, UsageEvent

ERROR_MARK = b'{"error":{"type":"'
PROBLEM_PREFIX = "https://lanewise.dev/problems/"


@dataclass(slots=True, eq=False)
class RequestRecord:
    request_id: str
    method: str
    path: str
    route: str
    started: float = field(default_factory=time.perf_counter)
    started_wall: float = field(default_factory=time.time)
    status: int = 0
    stream: bool = False
    body_done: bool = False
    failed: BaseException | None = None
    disconnected: bool = False
    error_type: str | None = None
    finish_reason: str | None = None
    principal: Principal | None = None
    model: str | None = None
    operation: str | None = None
    backend: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    model_calls: int = 0
    ttft_s: float | None = None
    generate_s: float | None = None
    stages: dict[str, float] = field(default_factory=dict)
    stage_events: list[StageTiming] = field(default_factory=list)
    usage_events: list[UsageEvent] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0
    index_version: Any = None
    prompt_name: str | None = None
    prompt_version: str | None = None
    trace_id: str | None = None
    span_id: int | None = None
    parent_span_id: int | None = None
    sampled: bool = False
    traceparent: str | None = None
    tracestate: str | None = None
    context: Any = None
    """Core's :class:`~lanewise.core.context.RequestContext` of this request."""
    cost: Any = None
    """The request context's ``cost`` (governance), taken when the request completes."""
    owner: Any = None
    """The :class:`~lanewise.observe.telemetry.Telemetry` that finishes this record."""
    awaiting_usage: bool = False
    unrouted: bool = False
    """No route took the request (404/405): its path is no metric label."""
    completed: bool = False
    duration_s: float = 0.0

    def caller(self) -> Principal | None:
        """The caller while the request runs (core's middleware authenticated it by then)."""
        if self.principal is None:
            context = self.context or current_request()
            if context is not None:
                principal: Principal = context.principal
                return principal
        return self.principal

    # -- events ------------------------------------------------------------------
    def add_usage(self, event: UsageEvent) -> None:
        self.usage_events.append(event)
        purpose = getattr(event, "purpose", "request")
        if purpose not in (None, "request"):
            return  # e.g. the retrieval query's embedding: counted in its own stage
        self.model_calls += 1
        self.model = event.model
        self.operation = event.operation
        self.backend = event.backend
        self.principal = event.principal
        self.tokens_in += event.usage.prompt_tokens
        self.tokens_out += event.usage.completion_tokens
        if event.ttft_s is not None and self.ttft_s is None:
            self.ttft_s = event.ttft_s
        self.generate_s = event.duration_s
        self.prompt_name = getattr(event, "prompt_name", None) or self.prompt_name
        self.prompt_version = getattr(event, "prompt_version", None) or self.prompt_version
        index = getattr(event, "index_version", None)
        if index is not None:
            self.index_version = index
        if event.finish_reason is not None:
            self.finish_reason = event.finish_reason

    def add_stage(self, event: StageTiming) -> None:
        self.stages[event.stage] = self.stages.get(event.stage, 0.0) + event.duration_s
        self.stage_events.append(event)
        attrs = event.attributes
        if not attrs:
            return
        for key in ("lanewise.cache.result", "lanewise.cache.embedding"):
            outcome = attrs.get(key)
            if outcome == "hit":
                self.cache_hits += 1
            elif outcome == "miss":
                self.cache_misses += 1
        index = attrs.get("lanewise.index.version")
        if index is not None:
            self.index_version = index
        template = attrs.get("lanewise.prompt.template")
        if template is not None:
            self.prompt_name = str(template)
            version = attrs.get("lanewise.prompt.version")
            self.prompt_version = None if version is None else str(version)
        finish = attrs.get("gen_ai.response.finish_reasons")
        if finish:
            self.finish_reason = str(finish[0] if isinstance(finish, list | tuple) else finish)

    # -- the response as it passes ----------------------------------------------------
    def scan_body(self, body: bytes) -> None:
        """Pick an error's problem type out of the bytes going to the client.

        The finish reason comes with the usage event; only an error needs the body.
        ``bytes.find``/``startswith`` on each chunk costs tens of nanoseconds; no JSON
        is parsed on the success path.
        """
        if self.status >= 400 and self.error_type is None:
            self.error_type = _problem_type(body, b'"type":"')
        elif body.startswith(b"data: " + ERROR_MARK):
            self.error_type = _problem_type(body, ERROR_MARK)

    # -- outcome ---------------------------------------------------------------------
    @property
    def outcome(self) -> str:
        """ok, rejected (4xx), error (5xx, an error mid-stream, a crash) or client_disconnect."""
        if self.failed is not None or self.status >= 500:
            return "error"
        if self.status >= 400:
            return "rejected"
        if self.error_type is not None:
            return "error"
        if self.disconnected or not self.body_done:
            return "client_disconnect"
        return "ok"


def _problem_type(body: bytes, mark: bytes) -> str | None:
    at = body.find(mark)
    if at < 0:
        return None
    start = at + len(mark)
    end = body.find(b'"', start)
    if end <= start:
        return None
    value = body[start:end].decode("ascii", "replace")
    return value.removeprefix(PROBLEM_PREFIX)


CURRENT: ContextVar[RequestRecord | None] = ContextVar("lanewise_observe_request", default=None)
