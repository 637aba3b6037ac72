"""The retriever the pipeline and ``/v1/retrieve`` use, built from the container."""

from __future__ import annotations

from typing import Any

from lanewise.core.errors import ConfigError
from lanewise.retrieval.caches import build_cache
from lanewise.retrieval.retriever import SearchRetriever


def build_retriever(container: Any) -> SearchRetriever | None:
    """None (pass) when no embedder or no vector store is configured or installed."""
    embedder = container.embedder()
    store = container.vector_store()
    if embedder is None or store is None:
        return None
    store_dim = getattr(store, "dimension", None)
    if store_dim is not None and store_dim != embedder.dimension:
        raise ConfigError(
            f"retrieval.vector_store has dimension {store_dim} but the embedder "
            f"{embedder.id} makes {embedder.dimension}-d vectors; make them agree"
        )
    settings = container.settings()
    cache = build_cache(
        redis_url=settings.redis_url,
        ttl_s=settings.retrieval.cache_ttl_s,
        max_entries=settings.retrieval.cache_max_entries,
    )
    if cache is not None:
        container.closeables().append(cache)
    return SearchRetriever(
        embedder=embedder,
        store=store,
        reranker=container.reranker(),
        cache=cache,
        hook=container.plugin_manager().hook,
        max_k=settings.retrieval.max_k,
        mode=settings.retrieval.mode,
        fusion=settings.retrieval.fusion,
        alpha=settings.retrieval.alpha,
        rrf_k=settings.retrieval.rrf_k,
    )
