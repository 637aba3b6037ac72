"""Vector stores (``[retrieval.vector_store] kind = ...``) and the embedded default's factory."""

from __future__ import annotations

from pathlib import Path

from lanewise.core.factory import FactoryContext
from lanewise.core.options import Options
from lanewise.core.protocols import Embedder
from lanewise.retrieval.stores.embedded import EmbeddedStore
from lanewise.retrieval.stores.embedded_index import IndexParams, Precision

__all__ = ["EmbeddedStore", "IndexParams", "build_embedded", "store_dimension"]


def store_dimension(ctx: FactoryContext, opts: Options) -> int:
    """``dimension`` when the table sets it, else the configured embedder's."""
    if opts.has("dimension"):
        return opts.integer("dimension", 384)
    embedder: Embedder | None = ctx.components.embedder()
    if embedder is None:
        raise ctx.error("set dimension: no embedder is configured to take it from")
    return int(embedder.dimension)


def build_embedded(ctx: FactoryContext) -> EmbeddedStore:
    """``kind = "embedded"``: SQLite + faiss HNSW under ``data_dir`` (see stores/embedded.py).

    ``dimension`` defaults to the configured embedder's.
    """
    opts = ctx.read(
        {"path", "dimension", "precision", "m", "ef_construction", "ef_search", "exact_limit"}
    )
    path = opts.text("path") or str(Path(ctx.settings.data_dir) / "vectors.sqlite3")
    dimension = store_dimension(ctx, opts)
    precision: Precision = opts.choice("precision", "f32", ("f32", "f16", "int8"))  # type: ignore[assignment]
    params = IndexParams(
        dimension=dimension,
        precision=precision,
        m=opts.integer("m", 16, minimum=4),
        ef_construction=opts.integer("ef_construction", 100),
        ef_search=opts.integer("ef_search", 64),
        exact_limit=opts.integer("exact_limit", 4_000, minimum=0),
    )
    return EmbeddedStore(path, params)
