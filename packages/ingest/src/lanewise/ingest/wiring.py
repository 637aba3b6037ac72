"""How the lane reaches other lanes' components: only through core's contracts.

Everything the ingest lane needs from outside (the embedder, the vector store,
the chunker, the hook relay, the model-call guards) comes through
:class:`Parts`. Core's typed ``Components`` satisfies it directly; an older
core's container is adapted here, in this one module, and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from lanewise.core.protocols import Chunker, Embedder, VectorStore
from lanewise.core.types import Principal, Usage, UsageEvent


@runtime_checkable
class Parts(Protocol):
    @property
    def hook(self) -> Any: ...

    def embedder(self) -> Embedder | None: ...

    def vector_store(self) -> VectorStore | None: ...

    def chunker(self) -> Chunker | None: ...


class _ContainerParts:
    """A pre-spine-v2 container seen as :class:`Parts`."""

    guards = None

    def __init__(self, container: Any) -> None:
        self._container = container

    @property
    def hook(self) -> Any:
        return self._container.plugin_manager().hook

    @property
    def settings(self) -> Any:
        return self._container.settings()

    def embedder(self) -> Embedder | None:
        built: Embedder | None = self._container.embedder()
        return built

    def vector_store(self) -> VectorStore | None:
        built: VectorStore | None = self._container.vector_store()
        return built

    def chunker(self) -> Chunker | None:
        built: Chunker | None = self._container.chunker()
        return built

    def closeables(self) -> list[Any]:
        found: list[Any] = self._container.closeables()
        return found


def parts_of(components: Any) -> Any:
    """``components`` (core's ``Components``) or a container, as :class:`Parts`."""
    if hasattr(components, "hook"):
        return components
    return _ContainerParts(components)


def embedder_tag(embedder: Embedder) -> str:
    """The embedder's identity in chunk ids: vectors from another model never mix."""
    return f"{embedder.id}@{embedder.version}"


async def embed_guarded(
    parts: Any,
    embedder: Embedder,
    texts: Sequence[str],
    *,
    tokens: int,
    principal: Principal,
    request_id: str,
) -> list[list[float]]:
    """One embedding call, admitted by the model-call guards and reported as usage."""
    guards = getattr(parts, "guards", None)
    t0 = time.perf_counter()
    if guards:
        from lanewise.core.guards import ModelCall  # type: ignore[import-untyped,unused-ignore]

        call = ModelCall(
            operation="embedding",
            purpose="ingest",
            model=embedder.id,
            principal=principal,
            request_id=request_id,
            inputs=tuple(texts),
        )
        async with guards.call(call) as scope:
            vectors = await embedder.embed(texts)
            scope.usage = Usage(prompt_tokens=tokens)
    else:
        vectors = await embedder.embed(texts)
    parts.hook.lanewise_on_usage(
        event=UsageEvent(
            request_id=request_id,
            principal=principal,
            model=embedder.id,
            operation="embedding",
            usage=Usage(prompt_tokens=tokens),
            duration_s=time.perf_counter() - t0,
            backend=embedder_tag(embedder),
        )
    )
    return vectors
