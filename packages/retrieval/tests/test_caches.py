"""Caches: in-process LRU + TTL and a real Redis (the ``redis_server`` fixture)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lanewise.core.types import Hit
from lanewise.retrieval import caches
from lanewise.retrieval.caches import (
    MemoryStore,
    RedisStore,
    RetrievalCache,
    build_cache,
    embedding_key,
    normalise_text,
    result_key,
)

HITS = [Hit(id="a", score=0.9, text="alpha", source="a.md", metadata={"lang": "en", "n": 1})]


def rkey(**overrides):
    base = dict(
        embedder_id="m",
        embedder_version="1",
        text="what is lanewise",
        tenant="acme",
        filter={"field": "lang", "eq": "en"},
        k=4,
        index_version=7,
        reranker="mmr",
        search="hybrid/rrf/0.5",
    )
    return result_key(**{**base, **overrides})


def test_normalisation_merges_whitespace_and_unicode_forms():
    assert normalise_text("  what\tis\n lanewise ") == "what is lanewise"
    assert normalise_text("ﬁle") == "file"  # NFKC ligature
    assert embedding_key("m", "1", "a  b") == embedding_key("m", "1", " a b ")
    assert embedding_key("m", "1", "Case") != embedding_key("m", "1", "case")


def test_embedding_key_changes_with_the_embedder_version():
    assert embedding_key("m", "1", "x") != embedding_key("m", "2", "x")
    assert embedding_key("m", "1", "x") != embedding_key("n", "1", "x")


@pytest.mark.parametrize(
    "change",
    [
        {"tenant": "other"},
        {"filter": {"field": "lang", "eq": "de"}},
        {"filter": None},
        {"k": 5},
        {"index_version": 8},
        {"embedder_version": "2"},
        {"reranker": ""},
        {"search": "dense"},
        {"search": "hybrid/weighted/0.5"},
        {"text": "what is lanewise?"},
    ],
)
def test_result_key_covers_everything_that_changes_results(change):
    assert rkey(**change) != rkey()


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=5))
def test_result_key_ignores_filter_key_order(d):
    assert rkey(filter=dict(reversed(list(d.items())))) == rkey(filter=d)


async def test_memory_store_is_a_bounded_lru():
    store = MemoryStore(max_entries=2)
    await store.set("a", b"1", 60)
    await store.set("b", b"2", 60)
    assert await store.get("a") == b"1"  # a is now the most recently used
    await store.set("c", b"3", 60)
    assert await store.get("b") is None
    assert await store.get("a") == b"1"
    assert await store.get("c") == b"3"
    assert len(store) == 2


async def test_memory_store_expires_entries(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(caches.time, "monotonic", lambda: now[0])
    store = MemoryStore()
    await store.set("a", b"1", 10)
    now[0] += 9.9
    assert await store.get("a") == b"1"
    now[0] += 0.2
    assert await store.get("a") is None
    assert len(store) == 0


async def roundtrip(cache: RetrievalCache) -> None:
    key = embedding_key("m", "1", "q")
    assert await cache.get_embedding(key) is None
    await cache.put_embedding(key, [0.5, -0.25, 1.0])
    assert await cache.get_embedding(key) == [0.5, -0.25, 1.0]
    assert await cache.get_hits(rkey()) is None
    await cache.put_hits(rkey(), HITS)
    assert await cache.get_hits(rkey()) == HITS
    assert await cache.get_hits(rkey(index_version=8)) is None
    assert cache.counters() == {
        "lanewise.cache.embedding.hits": 1,
        "lanewise.cache.embedding.misses": 1,
        "lanewise.cache.embedding.errors": 0,
        "lanewise.cache.result.hits": 1,
        "lanewise.cache.result.misses": 2,
        "lanewise.cache.result.errors": 0,
    }


async def test_memory_cache_roundtrip():
    cache = build_cache(redis_url=None, ttl_s=60, max_entries=10)
    assert isinstance(cache.store, MemoryStore)
    await roundtrip(cache)


async def test_redis_cache_roundtrip_with_ttl(redis_server):
    cache = build_cache(redis_url=redis_server.url, ttl_s=60, max_entries=10)
    assert isinstance(cache.store, RedisStore)
    try:
        await roundtrip(cache)
        keys = await cache.store._client.keys("lanewise:retrieval:*")
        assert len(keys) == 2
        ttl_ms = await cache.store._client.pttl(keys[0])
        assert 0 < ttl_ms <= 60_000
    finally:
        await cache.aclose()


async def test_redis_outage_is_a_miss_not_an_error(redis_server):
    cache = build_cache(redis_url=redis_server.url, ttl_s=60, max_entries=10)
    try:
        await cache.put_hits(rkey(), HITS)
        redis_server.kill()
        assert await cache.get_hits(rkey()) is None
        await cache.put_hits(rkey(), HITS)  # swallowed
        assert cache.stats["result"].errors == 2
        assert cache.stats["result"].misses == 1
    finally:
        await cache.aclose()


async def test_undecodable_entries_are_misses():
    cache = RetrievalCache(MemoryStore(), ttl_s=60)
    await cache.store.set(rkey(), b"\xc1garbage", 60)
    assert await cache.get_hits(rkey()) is None
    assert cache.stats["result"].hits == 0
    assert cache.stats["result"].misses == 1


def test_ttl_zero_disables_caching():
    assert build_cache(redis_url=None, ttl_s=0, max_entries=10) is None
