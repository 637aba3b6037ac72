"""Vector stores (``[retrieval.vector_store] kind = ...``) and the embedded default's factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lanewise.core.settings import ComponentConfig, Settings
from lanewise.retrieval.options import Options
from lanewise.retrieval.stores.embedded import EmbeddedStore
from lanewise.retrieval.stores.embedded_index import IndexParams, Precision

KEY = "retrieval.vector_store"

__all__ = ["EmbeddedStore", "IndexParams", "build_embedded"]


def build_embedded(config: ComponentConfig, settings: Settings, container: Any) -> EmbeddedStore:
    """``kind = "embedded"``: SQLite + faiss HNSW under ``data_dir`` (see stores/embedded.py).

    ``dimension`` defaults to the configured embedder's.
    """
    opts = Options(
        KEY,
        config.options,
        {"path", "dimension", "precision", "m", "ef_construction", "ef_search", "exact_limit"},
    )
    path = opts.text("path") or str(Path(settings.data_dir) / "vectors.sqlite3")
    if "dimension" in config.options:
        dimension = opts.integer("dimension", 384)
    else:
        dimension = int(container.embedder().dimension)
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
