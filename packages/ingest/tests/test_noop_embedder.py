"""The no-op embedder: no model, but vectors shaped like a real embedder's."""

from __future__ import annotations

import asyncio
import math

from hypothesis import given
from hypothesis import strategies as st
from lanewise.ingest.factories import NoopEmbedder


@given(st.lists(st.text(), min_size=1, max_size=8), st.integers(1, 64))
def test_one_unit_vector_per_text_the_same_for_the_same_text(texts: list[str], dim: int) -> None:
    embedder = NoopEmbedder(dim)
    vectors = asyncio.run(embedder.embed(texts))
    assert len(vectors) == len(texts)
    for text, vector in zip(texts, vectors, strict=True):
        assert len(vector) == dim
        assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-9)
        assert vector == embedder.vector(text)


def test_distinct_texts_get_distinct_vectors() -> None:
    # One vector for every text made pgvector's HNSW index pile up duplicates (atypical
    # inserts); the benchmark's corpus must get as many vectors as it has texts.
    embedder = NoopEmbedder(8)
    texts = [f"chunk {i}" for i in range(2000)]
    vectors = asyncio.run(embedder.embed(texts))
    assert len({tuple(v) for v in vectors}) == len(texts)
