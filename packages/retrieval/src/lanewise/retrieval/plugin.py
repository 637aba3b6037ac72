"""Hook implementations of lanewise-retrieval (entry point group `lanewise`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lanewise.core.factory import Components
from lanewise.core.hookspecs import hookimpl
from lanewise.core.registry import Register
from lanewise.core.settings import SectionRegister, Settings
from lanewise.retrieval.api import ROUTES
from lanewise.retrieval.embedders.factories import build_minilm, build_openai, build_triton
from lanewise.retrieval.factories import build_retriever
from lanewise.retrieval.rerank import build_mmr, build_passages
from lanewise.retrieval.settings import COMPONENTS, RetrievalSettings
from lanewise.retrieval.stores import build_embedded
from lanewise.retrieval.stores.pgvector import build_pgvector
from lanewise.retrieval.stores.weaviate import build_weaviate

if TYPE_CHECKING:
    from lanewise.core.protocols import Retriever
    from litestar.config.app import AppConfig


@hookimpl
def lanewise_register_settings(register: SectionRegister) -> None:
    register(
        "retrieval",
        RetrievalSettings,
        description="embedder, vector store, reranker, caches and k limits",
        components=COMPONENTS,
    )


@hookimpl
def lanewise_register_embedders(register: Register) -> None:
    register(
        "minilm",
        build_minilm,
        description="all-MiniLM-L6-v2 (int8 ONNX) in process on onnxruntime, 384-d",
        default=True,
    )
    register("openai", build_openai, description="any OpenAI-compatible /v1/embeddings server")
    register(
        "triton",
        build_triton,
        description="all-MiniLM-L6-v2 served by Triton (deploy/triton/cpu/minilm) over gRPC",
    )


@hookimpl
def lanewise_register_health_checks(register: Register, components: Components) -> None:
    # Only a remote embedder can become unreachable after start-up; minilm runs in process.
    spec = components.section(RetrievalSettings).embedder
    if spec is not None and spec.kind == "triton":
        register(
            "embedder",
            components.embedder,
            description="the triton embedder's model is ready and serves minilm's weights",
        )


@hookimpl
def lanewise_configure_gateway(
    app_config: AppConfig, settings: Settings, components: Components
) -> None:
    app_config.route_handlers.extend(ROUTES)


@hookimpl
def lanewise_register_rerankers(register: Register) -> None:
    register(
        "mmr",
        build_mmr,
        description="maximal marginal relevance: relevance minus redundancy, for diverse context",
        default=True,
    )
    register(
        "passages",
        build_passages,
        description="re-scores candidates by their best paragraph's cosine to the query (CPU)",
    )


@hookimpl
def lanewise_resolve_retriever(components: Components) -> Retriever | None:
    return build_retriever(components)


@hookimpl
def lanewise_register_vector_stores(register: Register) -> None:
    register(
        "embedded",
        build_embedded,
        description="SQLite (WAL) + faiss HNSW in process, persisted under data_dir",
        default=True,
    )
    register(
        "pgvector",
        build_pgvector,
        description="PostgreSQL + pgvector (HNSW, tenant column with row-level security)",
    )
    register(
        "weaviate",
        build_weaviate,
        description="Weaviate (weaviate-client v4): multi-tenant collection, near-vector/hybrid",
    )
