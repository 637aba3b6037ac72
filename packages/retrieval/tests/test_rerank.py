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
from lanewise.retrieval.rerank import (
    MMRReranker,
    PassageReranker,
    build_mmr,
    build_passages,
    jaccard_matrix,
    mmr_order,
    passages,
)

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


class CountingEmbedder:
    """MiniLM, counting the texts it is asked to embed."""

    def __init__(self, inner):
        self.inner = inner
        self.id, self.version, self.dimension = inner.id, inner.version, inner.dimension
        self.texts = 0

    async def embed(self, texts):
        self.texts += len(texts)
        return await self.inner.embed(texts)


ANSWER_IN_ONE_PARAGRAPH = [
    Hit(
        id="mixed",
        score=0.50,
        text="Logging handlers write records to streams.\n\n"
        "Recursively delete a directory tree, including every file below it.\n\n"
        "Formatters turn records into text lines.",
    ),
    Hit(id="topical", score=0.60, text="Directories hold files; paths name them. " * 3),
    Hit(id="other", score=0.55, text="Sockets connect processes over a network."),
]


async def test_passages_reranker_lifts_the_chunk_with_the_answering_paragraph():
    embedder = CountingEmbedder(MiniLMEmbedder())
    reranker = PassageReranker(embedder, weight=0.1)
    query = "How do I remove a folder with everything inside it?"
    reranked = await reranker.rerank(query=query, hits=ANSWER_IN_ONE_PARAGRAPH, k=2)
    assert [h.id for h in reranked] == ["mixed", "topical"]
    assert reranked[0] is ANSWER_IN_ONE_PARAGRAPH[0]  # hits come back unchanged, reordered
    assert reranker.embedded == 5
    assert embedder.texts == 6
    # Paragraphs are cached: the same candidates again embed only the query.
    await reranker.rerank(query="another question", hits=ANSWER_IN_ONE_PARAGRAPH, k=3)
    assert reranker.embedded == 5
    assert embedder.texts == 7


async def test_passages_reranker_rescores_only_the_first_candidates():
    reranker = PassageReranker(MiniLMEmbedder(), candidates=2)
    query = "How do I remove a folder with everything inside it?"
    hits = [ANSWER_IN_ONE_PARAGRAPH[2], ANSWER_IN_ONE_PARAGRAPH[1], ANSWER_IN_ONE_PARAGRAPH[0]]
    reranked = await reranker.rerank(query=query, hits=hits, k=3)
    assert [h.id for h in reranked][2] == "mixed"  # beyond `candidates`: order kept


def test_passages_split_on_blank_lines_and_keep_all_text():
    text = "a\n\nb\n \nc\n\nd"
    assert passages(text, 12) == ["a", "b", "c", "d"]
    assert passages(text, 2) == ["a", "b\n\nc\n\nd"]
    assert passages("   ", 3) == ["   "]


def test_passages_factory_validates_options(lanewise_settings):
    def build(**options):
        return build_passages(
            factory_context(
                {"kind": "passages", **options},
                key="retrieval.reranker",
                settings=lanewise_settings(),
            )
        )

    built = build(candidates=8)
    assert (built.candidates, built.weight) == (8, 0.1)
    assert built.embedder.dimension == 384  # the configured (default) embedder
    with pytest.raises(ConfigError, match=r"retrieval\.reranker\.weight"):
        build(weight=-1)
    with pytest.raises(ConfigError, match=r"retrieval\.reranker\.top"):
        build(top=3)
