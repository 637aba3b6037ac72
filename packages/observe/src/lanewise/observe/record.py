"""What the observe lane learns about one request.

The lane's request observer creates a :class:`RequestRecord` when the gateway
starts a request and keeps it in the request context's ``attributes``
(:data:`RECORD`); the ``lanewise_on_usage`` / ``lanewise_on_stage`` events,
which core emits inside the request (and inside the streaming tasks it starts,
which copy the context), append to it. When the request ends the observer copies
the outcome core recorded on the context and hands the record on. On the event
loop nothing is added up: :meth:`RequestRecord.fold` turns the events into
tokens, model, stages and cache counts where the record is processed.

It is a msgspec Struct of plain data (core's events are Structs too), so it
encodes to MessagePack in one C call, for a telemetry process of its own: as an
array (``array_like``: no field names on the wire; the gateway and its sidecar run
the same code). An array carries every field, the folded ones at their defaults
(msgspec omits defaults only from maps). Nothing refers back to a record, so the
garbage collector does not track it (``gc=False``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from lanewise.core.context import ResponseOutcome
from lanewise.core.types import Principal, StageTiming, UsageEvent

RECORD = "lanewise.observe.record"
"""Key of ``(telemetry, record)`` in the request context's ``attributes``."""


NO_RESPONSE = ResponseOutcome()


class RequestRecord(msgspec.Struct, array_like=True, gc=False):
    request_id: str = ""
    method: str = ""
    path: str = ""
    route: str = ""
    started: float = 0.0
    """``time.perf_counter()`` at the start (this process's clock)."""
    started_wall: float = 0.0
    duration_s: float = 0.0
    response: ResponseOutcome | None = None
    """Core's record of how the response went (status, stream, its end, the error);
    None: no response started (read through the properties below)."""
    unrouted: bool = False
    """No route took the request (404/405): its path is no metric label."""
    principal: Principal | None = None
    cost: float | None = None
    """The request context's ``cost`` (governance), taken when the request completes."""
    model: str | None = None
    prompt_name: str | None = None
    prompt_version: str | None = None
    index_version: Any = None
    trace_id: str | None = None
    span_id: int | None = None
    parent_span_id: int | None = None
    sampled: bool = False
    usage_events: list[UsageEvent] = []
    stage_events: list[StageTiming] = []
    awaiting_usage: bool = False
    completed: bool = False
    # Folded from the events by fold() (never set on the event loop):
    operation: str | None = None
    backend: str | None = None
    finish_reason: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    model_calls: int = 0
    ttft_s: float | None = None
    generate_s: float | None = None
    stages: dict[str, float] = {}
    cache_hits: int = 0
    cache_misses: int = 0

    def fold(self) -> None:
        """Add up the events: the usage of the request's model calls, then its stages."""
        context_model, self.model = self.model, None
        for event in self.usage_events:
            self._fold_usage(event)
        for timing in self.stage_events:
            self._fold_stage(timing)
        if self.model is None and self.model_calls:
            self.model = context_model

    def _fold_usage(self, event: UsageEvent) -> None:
        if event.purpose not in (None, "request"):
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
        self.prompt_name = event.prompt_name or self.prompt_name
        self.prompt_version = event.prompt_version or self.prompt_version
        if event.index_version is not None:
            self.index_version = event.index_version
        if event.finish_reason is not None:
            self.finish_reason = event.finish_reason

    def _fold_stage(self, event: StageTiming) -> None:
        self.stages[event.stage] = self.stages.get(event.stage, 0.0) + event.duration_s
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

    @property
    def status(self) -> int:
        return (self.response or NO_RESPONSE).status

    @property
    def stream(self) -> bool:
        return (self.response or NO_RESPONSE).stream

    @property
    def error_type(self) -> str | None:
        return (self.response or NO_RESPONSE).error_type

    @property
    def failure(self) -> str | None:
        return (self.response or NO_RESPONSE).failure

    @property
    def outcome(self) -> str:
        """ok, rejected (4xx), error (5xx, an error mid-stream, a crash) or client_disconnect."""
        response = self.response or NO_RESPONSE
        if response.failure is not None or response.status >= 500:
            return "error"
        if response.status >= 400:
            return "rejected"
        if response.error_type is not None:
            return "error"
        if response.disconnected or not response.body_done:
            return "client_disconnect"
        return "ok"
