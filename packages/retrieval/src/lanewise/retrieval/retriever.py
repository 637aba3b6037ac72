"""The retriever: query text → (cached) embedding → tenant-scoped search → rerank.

The tenant always comes from the authenticated principal; nothing in a request
body can name another tenant. Each stage emits one ``lanewise_on_stage`` event
(``embed``, ``search``, ``rerank``) carrying the cache outcome, the index
version and the cache counters, so the observe lane can chart hit ratios
without a hook of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from lanewise.core.context import current_request
from lanewise.core.embeddings import embed_metered
from lanewise.core.errors import InvalidRequest, LanewiseError, Unavailable
from lanewise.core.guards import GuardChain
from lanewise.core.protocols import (
    Embedder,
    Filter,
    Reranker,
    VectorStore,
)
from lanewise.core.stages import timed_stage
from lanewise.core.types import ANONYMOUS, Hit, Principal
from lanewise.retrieval.caches import RetrievalCache, embedding_key, result_key
from lanewise.retrieval.filters import parse_filter, to_json

RETRY_AFTER_S = 5.0
MAX_OVERFETCH = 200


@runtime_checkable
class HybridStore(Protocol):
    """A store that fuses lexical and vector search itself (Weaviate with ``alpha`` set)."""

    alpha: float | None

    async def search_hybrid(
        self,
        *,
        tenant: str,
        query: str,
        vector: Sequence[float],
        k: int,
        filter: Filter | None = None,
    ) -> list[Hit]: ...


class SearchRetriever:
    def __init__(
        self,
        *,
        embedder: Embedder,
        store: VectorStore,
        reranker: Reranker | None = None,
        cache: RetrievalCache | None = None,
        hook: Any = None,
        guards: GuardChain | None = None,
        max_k: int = 100,
        default_k: int = 4,
        degrade: bool = False,
        overfetch: int = 4,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.reranker = reranker
        self.cache = cache
        self.hook = hook
        self.guards = guards if guards is not None else GuardChain()
        self.max_k = max_k
        self.default_k = default_k
        self.degrade = degrade
        self.overfetch = overfetch

    # -- validation -------------------------------------------------------------
    def check(self, query: str, k: int, filter: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validate the request; return the filter in canonical form.

        The query is checked last, so a caller with nothing to search for (RAG without
        user text) still learns about a bad ``k`` or filter.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidRequest(f"k must be an integer >= 1 (got {k!r})", field="k")
        if k > self.max_k:
            raise InvalidRequest(
                f"k = {k} is above retrieval.max_k = {self.max_k}; ask for fewer hits",
                field="k",
                limit=self.max_k,
            )
        try:
            canonical = to_json(parse_filter(filter))
        except InvalidRequest as exc:
            where = exc.extensions.get("field")
            raise InvalidRequest(
                exc.detail,
                **{**exc.extensions, "field": "filter", "filter_field": where},
            ) from None
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequest("query must be a non-empty string", field="query")
        return canonical

    # -- stages -----------------------------------------------------------------
    @contextmanager
    def stage(self, request_id: str, name: str, **attributes: Any) -> Iterator[dict[str, Any]]:
        with timed_stage(self.hook, request_id, name, attributes):
            try:
                yield attributes
            finally:
                if self.hook is not None and self.cache is not None and name == "cache":
                    attributes.update(self.cache.counters())

    async def embed_query(
        self, query: str, request_id: str, principal: Principal = ANONYMOUS
    ) -> list[float]:
        e = self.embedder
        with self.stage(
            request_id,
            "embed",
            **{"lanewise.embedder.id": e.id, "lanewise.embedder.version": e.version},
        ) as attrs:
            key = embedding_key(e.id, e.version, query)
            if self.cache is not None:
                cached = await self.cache.get_embedding(key)
                attrs["lanewise.cache.embedding"] = "miss" if cached is None else "hit"
                if cached is not None:
                    return cached
            (vector,) = await embed_metered(
                e,
                [query],
                guards=self.guards,
                hook=self.hook,
                principal=principal,
                request_id=request_id,
                purpose="retrieval.query",
            )
            if self.cache is not None:
                await self.cache.put_embedding(key, vector)
            return vector

    async def _store_call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except LanewiseError:
            raise
        except (OSError, ConnectionError, TimeoutError) as exc:
            raise Unavailable(
                f"the vector store is unavailable ({type(exc).__name__}); retry shortly",
                retry_after_s=RETRY_AFTER_S,
            ) from None

    # -- the whole thing --------------------------------------------------------
    async def retrieve(
        self,
        *,
        principal: Principal,
        query: str,
        k: int,
        filter: Mapping[str, Any] | None = None,
        request_id: str = "",
    ) -> list[Hit]:
        canonical = self.check(query, k, filter)
        tenant = principal.tenant
        rerank = self.reranker
        key = ""
        version: int | None = None
        if self.cache is not None:
            with self.stage(request_id, "cache") as attrs:
                version = await self._store_call(self.store.index_version(tenant=tenant))
                attrs["lanewise.index.version"] = version
                context = current_request()
                if context is not None:
                    context.index_version = version
                key = result_key(
                    embedder_id=self.embedder.id,
                    embedder_version=self.embedder.version,
                    text=query,
                    tenant=tenant,
                    filter=canonical,
                    k=k,
                    index_version=int(version or 0),
                    reranker=rerank.name if rerank is not None else "",
                )
                cached = await self.cache.get_hits(key)
                attrs["lanewise.cache.result"] = "miss" if cached is None else "hit"
                if cached is not None:
                    return cached
        vector = await self.embed_query(query, request_id, principal)
        fetch_k = k if rerank is None else min(max(k * self.overfetch, k), MAX_OVERFETCH)
        with self.stage(request_id, "search", k=fetch_k) as attrs:
            if version is not None:
                attrs["lanewise.index.version"] = version
            if isinstance(self.store, HybridStore) and self.store.alpha is not None:
                attrs["hybrid_alpha"] = self.store.alpha
                search = self.store.search_hybrid(
                    tenant=tenant, query=query, vector=vector, k=fetch_k, filter=canonical or None
                )
            else:
                search = self.store.search(
                    tenant=tenant, vector=vector, k=fetch_k, filter=canonical or None
                )
            hits: list[Hit] = await self._store_call(search)
            attrs["hits"] = len(hits)
        if rerank is not None and hits:
            with self.stage(request_id, "rerank", reranker=rerank.name, candidates=len(hits)):
                hits = await rerank.rerank(query=query, hits=hits, k=k)
        hits = hits[:k]
        if self.cache is not None:
            await self.cache.put_hits(key, hits)
        return hits
