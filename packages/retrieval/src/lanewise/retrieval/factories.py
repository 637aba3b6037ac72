"""The retriever the pipeline and ``/v1/retrieve`` use, built from typed components."""

from __future__ import annotations

from lanewise.core.errors import ConfigError
from lanewise.core.factory import Components
from lanewise.core.protocols import Dimensioned
from lanewise.retrieval.caches import build_cache
from lanewise.retrieval.retriever import SearchRetriever
from lanewise.retrieval.settings import RetrievalSettings


def build_retriever(components: Components) -> SearchRetriever | None:
    """None (pass) when no embedder or no vector store is configured or installed."""
    embedder = components.embedder()
    store = components.vector_store()
    if embedder is None or store is None:
        return None
    if isinstance(store, Dimensioned) and store.dimension != embedder.dimension:
        raise ConfigError(
            f"retrieval.vector_store has dimension {store.dimension} but the embedder "
            f"{embedder.id} makes {embedder.dimension}-d vectors; make them agree"
        )
    settings = components.settings
    section = settings.section(RetrievalSettings)
    cache = build_cache(
        redis_url=settings.redis_url,
        ttl_s=section.cache_ttl_s,
        max_entries=section.cache_max_entries,
    )
    if cache is not None:
        components.on_close(cache)
    return SearchRetriever(
        embedder=embedder,
        store=store,
        reranker=components.reranker(),
        cache=cache,
        hook=components.hook,
        guards=components.guards,
        max_k=section.max_k,
        default_k=section.default_k,
        degrade=section.degrade,
        mode=section.mode,
        fusion=section.fusion,
        alpha=section.alpha,
        rrf_k=section.rrf_k,
    )
