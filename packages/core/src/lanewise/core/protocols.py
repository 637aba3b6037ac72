"""The lane contracts.

Each lane implements some of these and registers factories for them through
hooks; the gateway, the pipeline and other lanes only ever see the Protocol.
All I/O-bound methods are async; CPU-bound ones (tokenising, chunking) are
sync and cheap to call from a thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from lanewise.core.types import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    Chunk,
    Document,
    Hit,
    Principal,
)

Filter = Mapping[str, Any]
"""A metadata filter in lanewise's filter language (see the retrieval docs)."""


@runtime_checkable
class Closeable(Protocol):
    async def aclose(self) -> None: ...


@runtime_checkable
class HealthCheck(Protocol):
    """Anything that can say whether its dependency is reachable right now."""

    name: str

    async def check(self) -> str | None:
        """Return None when healthy, else a short reason."""
        ...


@runtime_checkable
class ChatBackend(Protocol):
    """Generates text for a chat request: whole, or as a stream of chunks."""

    name: str

    async def generate(self, request: ChatRequest) -> ChatCompletion: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...


@runtime_checkable
class Embedder(Protocol):
    id: str
    version: str
    dimension: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@runtime_checkable
class VectorStore(Protocol):
    async def upsert(
        self,
        *,
        tenant: str,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]],
    ) -> int: ...

    async def delete(
        self, *, tenant: str, ids: Sequence[str] | None = None, filter: Filter | None = None
    ) -> int: ...

    async def search(
        self, *, tenant: str, vector: Sequence[float], k: int, filter: Filter | None = None
    ) -> list[Hit]: ...

    async def count(self, *, tenant: str, filter: Filter | None = None) -> int: ...

    async def index_version(self, *, tenant: str) -> int: ...


@runtime_checkable
class Retriever(Protocol):
    """Query text in, ranked hits out (embed + search + rerank behind it)."""

    default_k: int
    """Hits returned when a request does not say how many."""
    degrade: bool
    """On an outage, answer without context (flagged) instead of failing, unless a request says."""

    async def retrieve(
        self,
        *,
        principal: Principal,
        query: str,
        k: int,
        filter: Filter | None = None,
        request_id: str = "",
    ) -> list[Hit]: ...


@runtime_checkable
class Reranker(Protocol):
    name: str

    async def rerank(self, *, query: str, hits: Sequence[Hit], k: int) -> list[Hit]: ...


@runtime_checkable
class DocumentLoader(Protocol):
    name: str
    suffixes: tuple[str, ...]

    def load(self, source: str, data: bytes) -> Iterable[Document]: ...


@runtime_checkable
class Chunker(Protocol):
    name: str

    def chunk(self, document: Document) -> list[Chunk]: ...


@runtime_checkable
class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...

    def count_messages(self, request: ChatRequest) -> int: ...


@runtime_checkable
class Evaluator(Protocol):
    name: str

    async def evaluate(
        self, *, request: ChatRequest, completion: ChatCompletion
    ) -> Mapping[str, float]: ...


# -- optional capabilities: declared here, checked with isinstance, never getattr --


@runtime_checkable
class OutputLimited(Protocol):
    """A backend with a ceiling on ``max_tokens`` (a larger ask is a 400 naming the limit)."""

    max_output_tokens: int | None


@runtime_checkable
class Describable(Protocol):
    """A backend that adds facts about itself to its ``/v1/models`` entry."""

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class ProcessLocal(Protocol):
    """A component holding a local resource (a file lock): one process only when True."""

    single_process: bool


@runtime_checkable
class TokenCountingEmbedder(Protocol):
    """An embedder that counts its own tokens exactly (usage for ``/v1/embeddings``)."""

    def count_tokens(self, texts: Sequence[str]) -> int: ...


@runtime_checkable
class Dimensioned(Protocol):
    """A vector store created for a fixed vector dimension."""

    dimension: int
