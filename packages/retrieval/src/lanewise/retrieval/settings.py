"""The retrieval lane's ``[retrieval]`` settings section (registered through a hook)."""

from __future__ import annotations

from typing import Literal

from lanewise.core.settings import ComponentConfig, Section
from pydantic import Field


class RetrievalSettings(Section):
    embedder: ComponentConfig | None = None
    vector_store: ComponentConfig | None = None
    reranker: ComponentConfig | None = None
    default_k: int = Field(4, ge=1)
    max_k: int = Field(100, ge=1)
    degrade: bool = Field(
        False, description="RAG answers without context (flagged) when the store is unavailable"
    )
    cache_ttl_s: float = Field(
        300.0, ge=0, description="query-embedding and result cache TTL; 0 disables both"
    )
    cache_max_entries: int = Field(10_000, ge=1, description="in-process cache bound (LRU)")
    mode: Literal["dense", "lexical", "hybrid"] = Field(
        "hybrid", description="how the store is searched unless a request says otherwise"
    )
    fusion: Literal["rrf", "weighted", "gated"] = Field(
        "gated",
        description="hybrid fusion: min-max normalised scores, reciprocal rank, or "
        "normalised scores with the lexical side only when BM25 has a clear winner",
    )
    alpha: float = Field(0.7, ge=0, le=1, description="hybrid weight of the dense side")
    rrf_k: int = Field(60, ge=1, description="the k in reciprocal rank fusion's 1 / (k + rank)")
    max_embedding_inputs: int = Field(
        2048, ge=1, description="/v1/embeddings: inputs per request (more get 400)"
    )
    max_embedding_input_tokens: int = Field(
        8192, ge=1, description="/v1/embeddings: tokens in any one input (more get 400)"
    )
    max_embedding_request_tokens: int = Field(
        300_000, ge=1, description="/v1/embeddings: tokens in all inputs together (more get 400)"
    )


COMPONENTS = {"embedder": "embedder", "vector_store": "vector store", "reranker": "reranker"}
"""Fields of the section that name components core builds, and their registry kinds."""
