"""Domain types exchanged between lanes.

msgspec Structs: cheap to build, validated when decoded from the wire, and
serialisable without a schema layer in between. Lanes exchange these, never
each other's classes.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "error", "cancelled"]
Priority = Literal["interactive", "batch"]
Operation = Literal["chat", "completion", "embedding"]
Metadata = dict[str, Any]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: every stored or logged thing is scoped by ``tenant``."""

    tenant: str
    user: str | None = None
    key_id: str | None = None
    workflow: str | None = None
    priority: Priority = "interactive"


ANONYMOUS = Principal(tenant="default")


class Message(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    content: str
    name: str | None = None


class SamplingParams(msgspec.Struct, frozen=True, kw_only=True):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


class RetrievalRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Retrieval asked for by a chat request (``lanewise.retrieval`` or ``rag/<model>``)."""

    k: int | None = None
    filter: Metadata | None = None
    degrade: bool | None = None
    """Answer without context (flagged) when the store is unavailable; None: the config's."""
    mode: str | None = None
    """How to search (the retrieval lane's ``dense``, ``lexical``, ``hybrid``); None: the
    config's. The retriever validates it; retrievers that do not search in modes ignore it."""
    fusion: str | None = None
    alpha: float | None = None

    def search_options(self) -> dict[str, str | float]:
        """``mode``, ``fusion`` and ``alpha`` where set, as keyword arguments for a retriever."""
        chosen = {"mode": self.mode, "fusion": self.fusion, "alpha": self.alpha}
        return {name: value for name, value in chosen.items() if value is not None}


class PromptRef(msgspec.Struct, frozen=True, kw_only=True):
    """Which template version built a request's prompt (``lanewise.prompt.*`` in telemetry)."""

    name: str
    version: str


class ChatRequest(msgspec.Struct, kw_only=True):
    """A model call as the lanes see it (already validated at the edge)."""

    model: str
    messages: list[Message]
    sampling: SamplingParams = msgspec.field(default_factory=SamplingParams)
    stream: bool = False
    operation: Operation = "chat"
    context: list[Hit] = msgspec.field(default_factory=list)
    request_id: str = ""
    principal: Principal = ANONYMOUS
    deadline_s: float | None = None
    retrieval: RetrievalRequest | None = None
    retrieval_degraded: str | None = None
    """Why retrieval was skipped (store unavailable, degrade on); None when it ran or was off."""
    prompt: PromptRef | None = None


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatChunk(msgspec.Struct, frozen=True, kw_only=True):
    """One streamed piece of a completion. The last chunk carries ``finish_reason``."""

    delta: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    lanewise: Metadata | None = None
    """Extension object for the client (e.g. which budget stopped the stream)."""


class ChatCompletion(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    text: str
    finish_reason: FinishReason
    usage: Usage
    citations: list[Citation] = msgspec.field(default_factory=list)
    retrieval_degraded: str | None = None
    """Why retrieval was skipped (store unavailable, degrade enabled); None when it ran."""
    prompt: PromptRef | None = None


class Document(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    text: str
    source: str = ""
    metadata: Metadata = msgspec.field(default_factory=dict)


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    document_id: str
    text: str
    index: int = 0
    source: str = ""
    metadata: Metadata = msgspec.field(default_factory=dict)


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    score: float
    text: str = ""
    source: str = ""
    metadata: Metadata = msgspec.field(default_factory=dict)
    dense_rank: int | None = None
    """1-based rank of this hit in the vector search that found it; None if that path did not."""
    lexical_rank: int | None = None
    """1-based rank in the lexical (BM25) search; None if that path did not find it."""


class Citation(msgspec.Struct, frozen=True, kw_only=True):
    marker: str
    id: str
    source: str
    dense_rank: int | None = None
    lexical_rank: int | None = None


class StageTiming(msgspec.Struct, frozen=True, kw_only=True):
    """How long one pipeline stage took (``lanewise.stage`` in telemetry)."""

    request_id: str
    stage: str
    started_at: float
    duration_s: float
    ok: bool = True
    attributes: Metadata = msgspec.field(default_factory=dict)


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One model call's consumption (OpenTelemetry GenAI names in telemetry)."""

    request_id: str
    principal: Principal
    model: str
    operation: Operation
    usage: Usage
    ttft_s: float | None = None
    duration_s: float = 0.0
    backend: str = ""
    purpose: str = "request"
    """``request``, ``retrieval.query``, ``ingest``, ``evaluation``: why the call was made."""
    status: str = "ok"
    """How the call ended: ok, error, timeout, cancelled, refused."""
    prompt_name: str | None = None
    prompt_version: str | None = None
    index_version: int | None = None
    finish_reason: FinishReason | None = None
    """Why the generation ended, as the backend said (``stop``, ``length``; ``length`` also
    when a guard cut the stream); None when it did not end on its own (error, cancel)."""


StateKind = Literal["gauge", "counter"]
StateMerge = Literal["sum", "max"]


class StateSample(msgspec.Struct, frozen=True, kw_only=True):
    """One value of a lane's live state, answered to ``lanewise_collect_state``.

    ``name`` is a Prometheus metric name (``lanewise_<lane>_<what>``); a ``counter`` is
    the process's cumulative total (``_total`` is added on export); a ``gauge`` is the
    value now, and ``merge`` says how the values of several worker processes of one
    gateway combine: ``sum`` (each process holds its own share: in-flight calls) or
    ``max`` (each sees the same thing, or the worst one counts: a shared queue, a
    breaker). Label values must be bounded (configuration, code), never user input.
    """

    name: str
    value: float
    kind: StateKind = "gauge"
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    help: str = ""
    merge: StateMerge = "sum"
