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


class HybridStore(EmbeddedStore):
    """The embedded store plus the optional hybrid entry point (records its calls)."""

    alpha = 0.5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hybrid_queries: list[str] = []

    async def search_hybrid(self, *, tenant, query, vector, k, filter=None):
        self.hybrid_queries.append(query)
        return await self.search(tenant=tenant, vector=vector, k=k, filter=filter)


async def test_hybrid_search_is_used_when_the_store_sets_alpha(tmp_path, embedder):
    store = HybridStore(tmp_path / "h.sqlite3", IndexParams(dimension=384))
    try:
        await store.upsert(
            tenant="acme",
            ids=["a"],
            vectors=await embedder.embed(["alpha"]),
            texts=["alpha"],
            metadata=[{}],
        )
        retriever = SearchRetriever(embedder=embedder, store=store)
        hits = await retriever.retrieve(principal=ACME, query="alpha?", k=1)
        assert [h.id for h in hits] == ["a"]
        assert store.hybrid_queries == ["alpha?"]
    finally:
        await store.aclose()
