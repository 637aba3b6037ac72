"""MMR: diversity over near-duplicates; a permutation of the candidates' best k."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lanewise.core.errors import ConfigError
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.settings import ComponentConfig
from lanewise.core.testing import factory_context
from lanewise.core.types import Hit
from lanewise.retrieval.embedders.minilm import MiniLMEmbedder
from lanewise.retrieval.rerank import MMRReranker, build_mmr, jaccard_matrix, mmr_order

DUPES = [
    Hit(id="a", score=0.95, text="the gateway meters tokens per tenant and per key"),
    Hit(id="a-copy", score=0.94, text="the gateway meters tokens per tenant and per key!"),
    Hit(id="b", score=0.80, text="celery workers run ingestion on redis queues"),
    Hit(id="c", score=0.60, text="weaviate is the production vector store"),
]


async def test_near_duplicate_is_pushed_down():
    reranked = await MMRReranker(lambda_=0.7).rerank(query="q", hits=DUPES, k=3)
    assert [h.id for h in reranked] == ["a", "b", "c"]


async def test_lambda_one_keeps_relevance_order():
    reranked = await MMRReranker(lambda_=1.0).rerank(query="q", hits=DUPES, k=4)
    assert [h.id for h in reranked] == ["a", "a-copy", "b", "c"]


async def test_embedding_similarity_catches_paraphrases():
    hits = [
        Hit(id="cat", score=0.9, text="A cat is sitting on the mat."),
        Hit(id="feline", score=0.89, text="On the rug rests a small feline."),
        Hit(id="stocks", score=0.7, text="Stock markets fell sharply today."),
    ]
    embedder = MiniLMEmbedder()
    lexical = await MMRReranker(lambda_=0.5).rerank(query="q", hits=hits, k=2)
    semantic = await MMRReranker(lambda_=0.5, similarity="embedding", embedder=embedder).rerank(
        query="q", hits=hits, k=2
    )
    assert [h.id for h in lexical] == ["cat", "feline"]
    assert [h.id for h in semantic] == ["cat", "stocks"]


@given(
    st.lists(
        st.tuples(st.floats(0, 1), st.sampled_from(["x y", "y z", "z w", "x y z"])), max_size=12
    ),
    st.integers(1, 15),
    st.floats(0, 1),
)
def test_mmr_picks_distinct_candidates_best_first(rows, k, lam):
    relevance = [r for r, _ in rows]
    order = mmr_order(relevance, jaccard_matrix([t for _, t in rows]), k, lam)
    assert len(order) == min(k, len(rows))
    assert len(set(order)) == len(order)
    if order:
        assert relevance[order[0]] == max(relevance)


def test_jaccard_is_symmetric_with_unit_diagonal():
    sim = jaccard_matrix([h.text for h in DUPES])
    np.testing.assert_allclose(sim, sim.T)
    np.testing.assert_allclose(np.diag(sim), 1.0)


@pytest.mark.parametrize(
    ("options", "key"),
    [({"lambda": 1.5}, "lambda"), ({"similarity": "magic"}, "similarity"), ({"x": 1}, "x")],
)
def test_bad_options_name_the_key(lanewise_settings, options, key):
    config = ComponentConfig(kind="mmr", **options)
    with pytest.raises(ConfigError, match=f"retrieval.reranker.{key}"):
        build_mmr(factory_context(config, key="retrieval.reranker", settings=lanewise_settings()))


def test_mmr_is_the_default_reranker():
    from lanewise.core.plugins import collect

    assert collect(get_plugin_manager(None), "reranker").default() == "mmr"
