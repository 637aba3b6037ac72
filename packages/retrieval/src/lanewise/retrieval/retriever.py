"""The retriever: query text → (cached) embedding → tenant-scoped search → rerank.

The search runs in one of three modes (:mod:`lanewise.retrieval.fusion`):
``dense`` (vectors only), ``lexical`` (BM25 only; the query is not embedded)
or ``hybrid`` (both, fused: by the store when it can fuse itself, else both
searches run concurrently and are fused here). A store without a lexical index
(no ``search_lexical``) serves the configured default ``hybrid`` as ``dense``
(the ``search`` stage says so); asking for ``lexical`` or ``hybrid`` in a
request is then a 400.

The tenant always comes from the authenticated principal; nothing in a request
body can name another tenant. Each stage emits one ``lanewise_on_stage`` event
(``embed``, ``search``, ``rerank``) carrying the cache outcome, the index
version and the cache counters, so the observe lane can chart hit ratios
without a hook of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from lanewise.core.context import current_request
from lanewise.core.embeddings import embed_metered
from lanewise.core.errors import InvalidRequest, LanewiseError, Unavailable
from lanewise.core.guards import GuardChain
from lanewise.core.protocols import Embedder, Reranker, VectorStore
from lanewise.core.stages import timed_stage
from lanewise.core.types import ANONYMOUS, Hit, Principal
from lanewise.retrieval.caches import RetrievalCache, embedding_key, result_key
from lanewise.retrieval.filters import parse_filter, to_json
from lanewise.retrieval.fusion import (
    FUSIONS,
    MODES,
    Fused,
    Fusion,
    HybridStore,
    Mode,
    fuse,
    ranked,
)
from lanewise.retrieval.lexical import LexicalStore

RETRY_AFTER_S = 5.0
MAX_OVERFETCH = 200


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
        mode: Mode = "hybrid",
        fusion: Fusion = "gated",
        alpha: float = 0.7,
        rrf_k: int = 60,
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
        self.mode: Mode = mode
        self.fusion: Fusion = fusion
        self.alpha = alpha
        self.rrf_k = rrf_k

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

    def search_plan(
        self, mode: str | None, fusion: str | None, alpha: float | None
    ) -> tuple[Mode, Fusion, float]:
        """The request's mode, fusion and alpha over the configured ones, validated."""
        if mode is not None and mode not in MODES:
            raise InvalidRequest(
                f"mode must be one of {', '.join(MODES)} (got {mode!r})", field="mode"
            )
        if fusion is not None and fusion not in FUSIONS:
            raise InvalidRequest(
                f"fusion must be one of {', '.join(FUSIONS)} (got {fusion!r})", field="fusion"
            )
        if alpha is not None and (
            isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1
        ):
            raise InvalidRequest(f"alpha must be a number in [0, 1] (got {alpha!r})", field="alpha")
        chosen: Mode = mode or self.mode  # type: ignore[assignment]
        if chosen != "dense" and not isinstance(self.store, LexicalStore):
            if mode is not None:
                raise InvalidRequest(
                    f"mode {mode!r} needs a lexical index, which the configured vector store "
                    f"({type(self.store).__name__}) lacks; use mode = 'dense'",
                    field="mode",
                )
            chosen = "dense"
        return (
            chosen,
            fusion or self.fusion,  # type: ignore[return-value]
            float(self.alpha if alpha is None else alpha),
        )

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

    async def _dense(
        self, tenant: str, vector: list[float], k: int, flt: dict[str, Any] | None
    ) -> list[Hit]:
        found: list[Hit] = await self._store_call(
            self.store.search(tenant=tenant, vector=vector, k=k, filter=flt)
        )
        return found

    async def _lexical(
        self, tenant: str, query: str, k: int, flt: dict[str, Any] | None
    ) -> list[Hit]:
        store: LexicalStore = self.store  # type: ignore[assignment]  # checked by search_plan
        found: list[Hit] = await self._store_call(
            store.search_lexical(tenant=tenant, query=query, k=k, filter=flt)
        )
        return found

    async def _hybrid(
        self,
        tenant: str,
        vector: list[float],
        query: str,
        k: int,
        depth: int,
        flt: dict[str, Any] | None,
        fusion: Fusion,
        alpha: float,
    ) -> Fused:
        """Fusion of ``depth`` candidates from each path, top ``k``: by the store when it
        fuses itself (reading only the winners' rows), else here over both searches."""
        if isinstance(self.store, HybridStore):
            fused: Fused = await self._store_call(
                self.store.search_hybrid(
                    tenant=tenant,
                    vector=vector,
                    query=query,
                    k=k,
                    depth=depth,
                    filter=flt,
                    fusion=fusion,
                    alpha=alpha,
                    rrf_k=self.rrf_k,
                )
            )
            return fused
        dense, lexical = await asyncio.gather(
            self._dense(tenant, vector, depth, flt), self._lexical(tenant, query, depth, flt)
        )
        hits = fuse(dense, lexical, k=k, fusion=fusion, alpha=alpha, rrf_k=self.rrf_k)
        return Fused(hits, len(dense), len(lexical))

    # -- the whole thing --------------------------------------------------------
    async def retrieve(
        self,
        *,
        principal: Principal,
        query: str,
        k: int,
        filter: Mapping[str, Any] | None = None,
        request_id: str = "",
        mode: str | None = None,
        fusion: str | None = None,
        alpha: float | None = None,
    ) -> list[Hit]:
        canonical = self.check(query, k, filter)
        mode_, fusion_, alpha_ = self.search_plan(mode, fusion, alpha)
        plan = mode_ if mode_ != "hybrid" else f"hybrid/{fusion_}/{alpha_:g}/{self.rrf_k}"
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
                    search=plan,
                )
                cached = await self.cache.get_hits(key)
                attrs["lanewise.cache.result"] = "miss" if cached is None else "hit"
                if cached is not None:
                    return cached
        vector = await self.embed_query(query, request_id, principal) if mode_ != "lexical" else []
        overfetched = min(max(k * self.overfetch, k), MAX_OVERFETCH)
        # Fusion needs candidates beyond k from each path, as a reranker does.
        fetch_k = k if rerank is None and mode_ != "hybrid" else overfetched
        flt = canonical or None
        with self.stage(
            request_id, "search", k=fetch_k, **{"lanewise.retrieval.mode": mode_}
        ) as attrs:
            if version is not None:
                attrs["lanewise.index.version"] = version
            if mode_ == "dense":
                hits = ranked(await self._dense(tenant, vector, fetch_k, flt), "dense")
            elif mode_ == "lexical":
                hits = ranked(await self._lexical(tenant, query, fetch_k, flt), "lexical")
            else:
                # Without a reranker only the top k of the fusion are used.
                fused = await self._hybrid(
                    tenant,
                    vector,
                    query,
                    k if rerank is None else fetch_k,
                    fetch_k,
                    flt,
                    fusion_,
                    alpha_,
                )
                attrs.update(
                    {
                        "lanewise.retrieval.fusion": fusion_,
                        "lanewise.retrieval.alpha": alpha_,
                        "dense_hits": fused.dense_hits,
                        "lexical_hits": fused.lexical_hits,
                    }
                )
                hits = fused.hits
            attrs["hits"] = len(hits)
        if rerank is not None and hits:
            with self.stage(request_id, "rerank", reranker=rerank.name, candidates=len(hits)):
                hits = await rerank.rerank(query=query, hits=hits, k=k)
        hits = hits[:k]
        if self.cache is not None:
            await self.cache.put_hits(key, hits)
        return hits
