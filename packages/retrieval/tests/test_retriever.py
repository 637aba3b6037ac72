"""SearchRetriever wiring on the embedded store and the MiniLM embedder."""

from __future__ import annotations

import pytest
from lanewise.core.errors import InvalidRequest
from lanewise.core.types import Principal, StageTiming, UsageEvent
from lanewise.retrieval.caches import MemoryStore, RetrievalCache
from lanewise.retrieval.embedders.minilm import MiniLMEmbedder
from lanewise.retrieval.rerank import MMRReranker
from lanewise.retrieval.retriever import SearchRetriever
from lanewise.retrieval.stores import EmbeddedStore, IndexParams

ACME = Principal(tenant="acme")
TEXTS = [f"document number {i} about topic {i % 5}" for i in range(40)]


class Hook:
    def __init__(self) -> None:
        self.events: list[StageTiming] = []
        self.usage: list[UsageEvent] = []

    def lanewise_on_stage(self, event: StageTiming) -> None:
        self.events.append(event)

    def lanewise_on_usage(self, event: UsageEvent) -> None:
        self.usage.append(event)


@pytest.fixture(scope="module")
def embedder():
    return MiniLMEmbedder()


@pytest.fixture
async def store(tmp_path, embedder):
    store = EmbeddedStore(tmp_path / "v.sqlite3", IndexParams(dimension=384))
    await store.upsert(
        tenant="acme",
        ids=[f"d{i}" for i in range(len(TEXTS))],
        vectors=await embedder.embed(TEXTS),
        texts=TEXTS,
        metadata=[{"topic": i % 5} for i in range(len(TEXTS))],
    )
    yield store
    await store.aclose()


async def test_reranking_overfetches_candidates(store, embedder):
    hook = Hook()
    retriever = SearchRetriever(
        embedder=embedder, store=store, reranker=MMRReranker(), hook=hook, max_k=10
    )
    hits = await retriever.retrieve(principal=ACME, query="topic 3", k=3, request_id="r1")
    assert len(hits) == 3
    stages = {e.stage: e.attributes for e in hook.events}
    assert set(stages) == {"embed", "search", "rerank"}  # no cache configured
    assert stages["search"]["k"] == 12
    assert stages["rerank"]["candidates"] == 12
    assert all(e.request_id == "r1" for e in hook.events)
    [usage] = hook.usage  # the query embedding is a metered model call of the request
    assert (usage.operation, usage.purpose, usage.request_id) == (
        "embedding",
        "retrieval.query",
        "r1",
    )
    assert usage.principal == ACME
    assert usage.usage.prompt_tokens == embedder.count_tokens(["topic 3"])


async def test_without_reranker_searches_exactly_k(store, embedder):
    hook = Hook()
    retriever = SearchRetriever(embedder=embedder, store=store, hook=hook)
    hits = await retriever.retrieve(
        principal=ACME, query="topic 3", k=5, filter={"field": "topic", "eq": 3}
    )
    assert [h.metadata["topic"] for h in hits] == [3] * 5
    assert [e.stage for e in hook.events] == ["embed", "search"]


async def test_other_tenants_see_nothing(store, embedder):
    retriever = SearchRetriever(embedder=embedder, store=store)
    assert await retriever.retrieve(principal=Principal(tenant="other"), query="topic", k=3) == []


async def test_cached_results_are_returned_until_the_index_changes(store, embedder):
    cache = RetrievalCache(MemoryStore(), ttl_s=60)
    retriever = SearchRetriever(embedder=embedder, store=store, cache=cache)
    first = await retriever.retrieve(principal=ACME, query="topic 1", k=2)
    assert await retriever.retrieve(principal=ACME, query=" topic   1 ", k=2) == first
    assert cache.stats["result"].hits == 1
    await store.delete(tenant="acme", ids=[first[0].id])
    after = await retriever.retrieve(principal=ACME, query="topic 1", k=2)
    assert first[0].id not in [h.id for h in after]
    assert cache.stats["embedding"].hits == 1


@pytest.mark.parametrize(
    ("query", "k", "flt", "field"),
    [
        ("", 3, None, "query"),
        ("x", 0, None, "k"),
        ("x", True, None, "k"),
        ("x", 101, None, "k"),
        ("x", 3, {"or": []}, "filter"),
    ],
)
async def test_bad_input_names_the_field(store, embedder, query, k, flt, field):
    retriever = SearchRetriever(embedder=embedder, store=store)
    with pytest.raises(InvalidRequest) as caught:
        await retriever.retrieve(principal=ACME, query=query, k=k, filter=flt)
    assert caught.value.extensions["field"] == field


class DenseOnlyStore:
    """A store with vector search only (as a third-party plugin's might be)."""

    def __init__(self, inner: EmbeddedStore) -> None:
        self.inner = inner

    async def search(self, **kwargs):
        return await self.inner.search(**kwargs)

    async def index_version(self, **kwargs):
        return await self.inner.index_version(**kwargs)


async def test_each_mode_marks_which_path_found_each_hit(store, embedder):
    hook = Hook()
    retriever = SearchRetriever(embedder=embedder, store=store, hook=hook)
    dense = await retriever.retrieve(principal=ACME, query="document number 17", k=3, mode="dense")
    assert all(h.dense_rank == i and h.lexical_rank is None for i, h in enumerate(dense, 1))
    lexical = await retriever.retrieve(
        principal=ACME, query="document number 17", k=3, mode="lexical"
    )
    # "17" occurs in one text only: BM25 ranks it first.
    assert lexical[0].id == "d17"
    assert all(h.lexical_rank == i and h.dense_rank is None for i, h in enumerate(lexical, 1))
    stages = [e.stage for e in hook.events]
    assert stages == ["embed", "search", "search"]  # lexical mode embeds nothing
    hybrid = await retriever.retrieve(principal=ACME, query="document number 17", k=3)
    assert hybrid[0].id == "d17"
    assert hybrid[0].dense_rank is not None
    assert hybrid[0].lexical_rank == 1
    search = hook.events[-1].attributes
    assert search["lanewise.retrieval.mode"] == "hybrid"
    assert search["lanewise.retrieval.fusion"] == "gated"
    assert search["lanewise.retrieval.alpha"] == 0.7
    assert search["dense_hits"] == search["lexical_hits"] == 12


async def test_weighted_fusion_and_alpha_per_request(store, embedder):
    retriever = SearchRetriever(embedder=embedder, store=store)
    only_dense = await retriever.retrieve(
        principal=ACME, query="document number 17", k=4, fusion="weighted", alpha=1.0
    )
    dense = await retriever.retrieve(principal=ACME, query="document number 17", k=4, mode="dense")
    assert [h.id for h in only_dense] == [h.id for h in dense]
    only_lexical = await retriever.retrieve(
        principal=ACME, query="document number 17", k=1, fusion="weighted", alpha=0.0
    )
    assert only_lexical[0].id == "d17"
    assert only_lexical[0].score == 1.0


async def test_store_without_lexical_index_serves_the_default_as_dense(store, embedder):
    hook = Hook()
    retriever = SearchRetriever(embedder=embedder, store=DenseOnlyStore(store), hook=hook)
    hits = await retriever.retrieve(principal=ACME, query="topic 2", k=2)
    assert len(hits) == 2
    assert all(h.lexical_rank is None for h in hits)
    assert hook.events[-1].attributes["lanewise.retrieval.mode"] == "dense"
    for mode in ("lexical", "hybrid"):
        with pytest.raises(InvalidRequest, match="lexical index") as caught:
            await retriever.retrieve(principal=ACME, query="topic 2", k=2, mode=mode)
        assert caught.value.extensions["field"] == "mode"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"mode": "sparse"}, "mode"),
        ({"fusion": "max"}, "fusion"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": True}, "alpha"),
    ],
)
async def test_bad_search_options_name_the_field(store, embedder, options, field):
    retriever = SearchRetriever(embedder=embedder, store=store)
    with pytest.raises(InvalidRequest) as caught:
        await retriever.retrieve(principal=ACME, query="x", k=1, **options)
    assert caught.value.extensions["field"] == field


async def test_result_cache_keys_on_the_mode(store, embedder):
    cache = RetrievalCache(MemoryStore(), ttl_s=60)
    retriever = SearchRetriever(embedder=embedder, store=store, cache=cache)
    lexical = await retriever.retrieve(principal=ACME, query="number 17", k=2, mode="lexical")
    dense = await retriever.retrieve(principal=ACME, query="number 17", k=2, mode="dense")
    assert cache.stats["result"].hits == 0
    assert lexical[0].lexical_rank == 1
    assert dense[0].lexical_rank is None
    assert await retriever.retrieve(principal=ACME, query="number 17", k=2, mode="dense") == dense
    assert cache.stats["result"].hits == 1
