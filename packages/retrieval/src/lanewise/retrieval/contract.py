"""The shared vector-store contract suite every store must pass.

Install ``lanewise-retrieval[testing]`` (pytest, pytest-asyncio, hypothesis) and
use it from a store's tests by subclassing :class:`VectorStoreContract` and
overriding the ``store`` fixture so it yields a fresh, empty store of
dimension ``DIM`` (8)::

    from lanewise.retrieval.contract import VectorStoreContract

    class TestPgvectorContract(VectorStoreContract):
        @pytest.fixture
        async def store(self, postgres_url):
            s = PgvectorStore(postgres_url, table=f"t_{uuid4().hex}", dimension=self.DIM)
            yield s
            await s.aclose()

The contract (what a caller may rely on, whatever the store):

- ``upsert`` validates the whole batch before writing anything: ids, vectors,
  texts and metadata of equal length; unique non-empty ids; every vector of the
  store's dimension, finite and non-zero. A bad batch raises
  :class:`~lanewise.core.errors.InvalidRequest` and changes nothing (count and
  index version included). Upserting an existing id replaces it. It returns the
  number of rows written.
- ``search`` returns at most ``k`` hits of the caller's tenant matching the
  filter, best first; ``score`` is the cosine similarity (higher is better,
  within 1e-2 of the exact value); ``text`` and ``metadata`` are as upserted.
  ``k < 1`` raises InvalidRequest. On small data (here: at most a few hundred
  rows) results equal exact brute force.
- ``delete`` by ids, by filter, or both (the ids that match the filter);
  neither is an InvalidRequest (no accidental "delete everything"). Returns the
  number of rows deleted; unknown ids are ignored.
- ``count`` counts the tenant's rows matching the filter.
- ``index_version`` never decreases and strictly increases on every upsert and
  on every delete that deleted something.
- Filters follow ``docs/retrieval-filters.md``; a malformed one raises
  InvalidRequest. Results equal :func:`lanewise.retrieval.filters.matches`.
- Tenants are isolated: the same id may exist in two tenants with different
  contents, and nothing done or asked in one tenant sees or changes another.
- A store with a lexical index (``search_lexical``, see
  :class:`lanewise.retrieval.lexical.LexicalStore`) ranks exactly as
  :func:`lanewise.retrieval.lexical.bm25_rank` over the tenant's rows
  (statistics from the tenant's rows only; the filter restricts which rows are
  returned), under the same tenant isolation and filter rules; and hybrid
  search (the store's two rankings fused by :func:`lanewise.retrieval.fusion.fuse`)
  equals the fusion of the two references. Stores without one skip these tests.
"""

from __future__ import annotations

import itertools
import math
import random
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lanewise.core.errors import InvalidRequest
from lanewise.core.protocols import VectorStore
from lanewise.core.types import Hit
from lanewise.retrieval.filters import Node, matches, to_json
from lanewise.retrieval.fusion import HybridStore, fuse
from lanewise.retrieval.lexical import LexicalStore, bm25_rank
from lanewise.retrieval.strategies import filters, metadata

Row = tuple[str, list[float], str, dict[str, Any]]
"""(id, vector, text, metadata) as a test upserts it."""


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def brute_force(
    rows: Sequence[Row], query: Sequence[float], k: int, filter: Node | Mapping[str, Any] | None
) -> list[tuple[str, float]]:
    """Exact top-k (id, cosine) over rows matching the filter: the oracle."""
    scored = [(rid, cosine(vec, query)) for rid, vec, _, meta in rows if matches(filter, meta)]
    scored.sort(key=lambda pair: -pair[1])
    return scored[:k]


def random_vector(rng: random.Random, dim: int) -> list[float]:
    return [rng.uniform(-1.0, 1.0) for _ in range(dim)]


def random_rows(
    rng: random.Random, n: int, dim: int, *, prefix: str = "d", metas: Sequence[dict[str, Any]] = ()
) -> list[Row]:
    return [
        (
            f"{prefix}{i}",
            random_vector(rng, dim),
            f"text of {prefix}{i}",
            dict(metas[i]) if i < len(metas) else {"i": i, "even": i % 2 == 0},
        )
        for i in range(n)
    ]


async def put(store: VectorStore, tenant: str, rows: Sequence[Row]) -> int:
    return await store.upsert(
        tenant=tenant,
        ids=[r[0] for r in rows],
        vectors=[r[1] for r in rows],
        texts=[r[2] for r in rows],
        metadata=[r[3] for r in rows],
    )


WORDS = ("queue", "worker", "retry", "timeout", "budget", "token", "index", "shard", "cache")
"""A small vocabulary so generated texts share terms (a random string would match nothing)."""


def random_texts(rng: random.Random, n: int, *, prefix: str = "") -> list[str]:
    """Texts of vocabulary words; text i also has i filler words ('pad'), so no two texts
    have the same length and BM25 scores do not tie (the rankings compare exactly)."""
    out = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
        out.append(" ".join([prefix, *words, *["pad"] * i]).strip())
    return out


def with_texts(rows: Sequence[Row], texts: Sequence[str]) -> list[Row]:
    return [(rid, vec, text, meta) for (rid, vec, _, meta), text in zip(rows, texts, strict=True)]


def lexical_reference(
    rows: Sequence[Row], query: str, k: int, filter: Node | Mapping[str, Any] | None
) -> list[tuple[str, float]]:
    """BM25 over the tenant's rows, returning only rows that match the filter: the oracle."""
    allowed = [rid for rid, _, _, meta in rows if matches(filter, meta)]
    return bm25_rank([(rid, text) for rid, _, text, _ in rows], query, k, allowed)


def _assert_lexical(hits: Sequence[Hit], everything: Sequence[tuple[str, float]], k: int) -> None:
    """Hits equal the reference's top k; rows with equal scores may come in any order."""
    expected = everything[:k]
    assert len(hits) == len(expected), (hits, expected)
    for hit, (_, want) in zip(hits, expected, strict=True):
        assert hit.score == pytest.approx(want, rel=1e-6), (hit.id, hit.score, want)
    score_of = dict(everything)
    for hit, (rid, want) in zip(hits, expected, strict=True):
        assert hit.id == rid or score_of.get(hit.id, -1.0) == pytest.approx(want, rel=1e-9), (
            hit.id,
            rid,
        )
    assert len({h.id for h in hits}) == len(hits)


def new_tenant() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def _assert_ranked(hits: Sequence[Hit], expected: Sequence[tuple[str, float]], k: int) -> None:
    """Hits equal the oracle's top k; rows tied (within 1e-3) at the k-th score may swap."""
    ids = [h.id for h in hits]
    assert len(hits) == len(expected), (ids, expected)
    assert len(set(ids)) == len(ids), ids
    scores = [h.score for h in hits]
    assert all(a >= b - 1e-6 for a, b in itertools.pairwise(scores)), scores
    for hit, (_, want) in zip(hits, expected, strict=True):
        assert abs(hit.score - want) < 1e-2, (hit.id, hit.score, want)
    if len(expected) < k:
        assert set(ids) == {rid for rid, _ in expected}, (ids, expected)
    elif expected:
        sure = {rid for rid, s in expected if s > expected[-1][1] + 1e-3}
        assert sure <= set(ids), (sure - set(ids), expected)


_PROPERTY = settings(
    max_examples=25,
    deadline=None,
    # Each store subclass runs the same test methods (differing executors) on its own store;
    # every example uses fresh tenants, so reusing the function-scoped store is safe.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.differing_executors,
    ],
)


class VectorStoreContract:
    """Subclass and override ``store`` (a fresh, empty store of dimension ``DIM``)."""

    DIM: ClassVar[int] = 8
    EXACT_BM25: ClassVar[bool] = True
    """False for a store that ranks with its own BM25 (Weaviate: its tokenizer): lexical hits
    are then checked as a set (the rows that match the filter and share a query term)."""

    def assert_lexical(
        self, hits: Sequence[Hit], everything: Sequence[tuple[str, float]], k: int
    ) -> None:
        if self.EXACT_BM25:
            _assert_lexical(hits, everything, k)
        else:
            found = {h.id for h in hits}
            assert found <= {rid for rid, _ in everything}, (found, everything)
            assert len(found) == len(hits) == min(k, len(everything))

    @pytest.fixture
    def store(self) -> AsyncIterator[VectorStore]:
        raise NotImplementedError("override the `store` fixture in the subclass")

    # -- upsert -----------------------------------------------------------------

    async def test_upsert_then_search_returns_the_row(self, store: VectorStore) -> None:
        rng = random.Random(1)
        tenant = new_tenant()
        rows = random_rows(rng, 20, self.DIM)
        rows[3][3].update({"lang": "en", "year": 2021, "score": 0.5, "draft": False, "n": None})
        assert await put(store, tenant, rows) == 20
        assert await store.count(tenant=tenant) == 20
        hits = await store.search(tenant=tenant, vector=rows[3][1], k=3)
        assert hits[0].id == "d3"
        assert abs(hits[0].score - 1.0) < 1e-2
        assert hits[0].text == "text of d3"
        want = {k: v for k, v in rows[3][3].items() if v is not None}
        assert {k: v for k, v in hits[0].metadata.items() if v is not None} == want
        _assert_ranked(hits, brute_force(rows, rows[3][1], 3, None), 3)

    async def test_upsert_existing_id_replaces_it(self, store: VectorStore) -> None:
        rng = random.Random(2)
        tenant = new_tenant()
        rows = random_rows(rng, 5, self.DIM)
        await put(store, tenant, rows)
        new_vec = random_vector(rng, self.DIM)
        await put(store, tenant, [("d2", new_vec, "replaced", {"v": 2})])
        assert await store.count(tenant=tenant) == 5
        hits = await store.search(tenant=tenant, vector=new_vec, k=1)
        assert (hits[0].id, hits[0].text, hits[0].metadata) == ("d2", "replaced", {"v": 2})
        old = await store.search(tenant=tenant, vector=rows[2][1], k=5)
        assert all(h.text != "text of d2" for h in old)
        assert await store.count(tenant=tenant, filter={"field": "i", "exists": True}) == 4

    @pytest.mark.parametrize(
        "bad",
        ["short_vector", "long_vector", "nan", "zero", "lengths", "duplicate_id", "empty_id"],
    )
    async def test_bad_batch_is_rejected_and_writes_nothing(
        self, store: VectorStore, bad: str
    ) -> None:
        rng = random.Random(3)
        tenant = new_tenant()
        await put(store, tenant, random_rows(rng, 3, self.DIM, prefix="old"))
        version = await store.index_version(tenant=tenant)
        rows = random_rows(rng, 6, self.DIM)
        ids = [r[0] for r in rows]
        vectors = [r[1] for r in rows]
        texts = [r[2] for r in rows]
        metas: list[Mapping[str, Any]] = [r[3] for r in rows]
        if bad == "short_vector":
            vectors[4] = vectors[4][:-1]
        elif bad == "long_vector":
            vectors[4] = [*vectors[4], 0.5]
        elif bad == "nan":
            vectors[4] = [math.nan] * self.DIM
        elif bad == "zero":
            vectors[4] = [0.0] * self.DIM
        elif bad == "lengths":
            texts = texts[:-1]
        elif bad == "duplicate_id":
            ids[5] = ids[0]
        elif bad == "empty_id":
            ids[5] = ""
        with pytest.raises(InvalidRequest) as caught:
            await store.upsert(tenant=tenant, ids=ids, vectors=vectors, texts=texts, metadata=metas)
        if bad.endswith("_vector"):
            assert str(self.DIM) in caught.value.detail
        assert await store.count(tenant=tenant) == 3
        assert await store.index_version(tenant=tenant) == version
        hits = await store.search(tenant=tenant, vector=vectors[0], k=10)
        assert sorted(h.id for h in hits) == ["old0", "old1", "old2"]

    async def test_empty_upsert_is_a_no_op(self, store: VectorStore) -> None:
        tenant = new_tenant()
        assert await store.upsert(tenant=tenant, ids=[], vectors=[], texts=[], metadata=[]) == 0
        assert await store.count(tenant=tenant) == 0

    # -- search -----------------------------------------------------------------

    async def test_search_empty_tenant_and_bad_k(self, store: VectorStore) -> None:
        tenant = new_tenant()
        assert await store.search(tenant=tenant, vector=[1.0] * self.DIM, k=5) == []
        assert await store.count(tenant=tenant) == 0
        with pytest.raises(InvalidRequest):
            await store.search(tenant=tenant, vector=[1.0] * self.DIM, k=0)
        with pytest.raises(InvalidRequest):
            await store.search(tenant=tenant, vector=[1.0] * (self.DIM + 1), k=1)

    async def test_k_larger_than_the_data_returns_everything(self, store: VectorStore) -> None:
        rng = random.Random(4)
        tenant = new_tenant()
        rows = random_rows(rng, 7, self.DIM)
        await put(store, tenant, rows)
        query = random_vector(rng, self.DIM)
        hits = await store.search(tenant=tenant, vector=query, k=50)
        _assert_ranked(hits, brute_force(rows, query, 50, None), 50)

    async def test_malformed_filter_is_invalid_request(self, store: VectorStore) -> None:
        tenant = new_tenant()
        await put(store, tenant, random_rows(random.Random(5), 3, self.DIM))
        with pytest.raises(InvalidRequest, match="between"):
            await store.search(
                tenant=tenant, vector=[1.0] * self.DIM, k=1, filter={"field": "i", "between": 1}
            )
        with pytest.raises(InvalidRequest):
            await store.count(tenant=tenant, filter={"and": []})
        with pytest.raises(InvalidRequest):
            await store.delete(tenant=tenant, filter={"field": "i"})

    async def test_filtered_search_examples(self, store: VectorStore) -> None:
        rng = random.Random(6)
        tenant = new_tenant()
        metas = [
            {"lang": ["en", "de", "fr"][i % 3], "year": 2015 + i % 10, "draft": i % 4 == 0}
            for i in range(300)
        ]
        rows = random_rows(rng, 300, self.DIM, metas=metas)
        await put(store, tenant, rows)
        query = random_vector(rng, self.DIM)
        for flt in (
            {"field": "lang", "eq": "en"},
            {"and": [{"field": "lang", "in": ["en", "de"]}, {"field": "year", "gte": 2020}]},
            {"not": {"field": "draft", "eq": True}},
            {"or": [{"field": "year", "lt": 2016}, {"field": "lang", "ne": "fr"}]},
            {"field": "missing", "exists": False},
            {"field": "year", "eq": 1999},
        ):
            hits = await store.search(tenant=tenant, vector=query, k=10, filter=flt)
            _assert_ranked(hits, brute_force(rows, query, 10, flt), 10)
            assert await store.count(tenant=tenant, filter=flt) == sum(
                matches(flt, r[3]) for r in rows
            )

    async def test_bool_and_number_values_stay_apart(self, store: VectorStore) -> None:
        rng = random.Random(11)
        tenant = new_tenant()
        metas: list[dict[str, Any]] = [
            {"flag": True},
            {"flag": 1},
            {"flag": 1.0},
            {"flag": "1"},
            {},
        ]
        await put(store, tenant, random_rows(rng, 5, self.DIM, metas=metas))
        for value, want in ((True, {"d0"}), (1, {"d1", "d2"}), ("1", {"d3"}), (False, set())):
            flt = {"field": "flag", "eq": value}
            hits = await store.search(tenant=tenant, vector=[1.0] * self.DIM, k=10, filter=flt)
            assert {h.id for h in hits} == want, value
            assert await store.count(tenant=tenant, filter=flt) == len(want)

    @_PROPERTY
    @given(
        metas=st.lists(metadata(), min_size=1, max_size=40),
        flt=filters(max_leaves=6),
        seed=st.integers(0, 2**32 - 1),
        k=st.integers(1, 12),
    )
    async def test_filtered_search_equals_brute_force(
        self, store: VectorStore, metas: list[dict[str, Any]], flt: Node, seed: int, k: int
    ) -> None:
        rng = random.Random(seed)
        tenant = new_tenant()
        rows = random_rows(rng, len(metas), self.DIM, metas=metas)
        await put(store, tenant, rows)
        query = random_vector(rng, self.DIM)
        raw = to_json(flt)
        hits = await store.search(tenant=tenant, vector=query, k=k, filter=raw)
        _assert_ranked(hits, brute_force(rows, query, k, flt), k)
        assert await store.count(tenant=tenant, filter=raw) == sum(matches(flt, m) for m in metas)

    # -- delete -----------------------------------------------------------------

    async def test_delete_by_ids(self, store: VectorStore) -> None:
        rng = random.Random(7)
        tenant = new_tenant()
        rows = random_rows(rng, 10, self.DIM)
        await put(store, tenant, rows)
        assert await store.delete(tenant=tenant, ids=["d1", "d4", "nope"]) == 2
        assert await store.count(tenant=tenant) == 8
        hits = await store.search(tenant=tenant, vector=rows[1][1], k=10)
        assert {h.id for h in hits} == {r[0] for r in rows} - {"d1", "d4"}
        assert await store.delete(tenant=tenant, ids=[]) == 0

    async def test_delete_by_filter_and_by_both(self, store: VectorStore) -> None:
        rng = random.Random(8)
        tenant = new_tenant()
        rows = random_rows(rng, 10, self.DIM)
        await put(store, tenant, rows)
        assert await store.delete(tenant=tenant, filter={"field": "even", "eq": True}) == 5
        assert await store.count(tenant=tenant) == 5
        assert (
            await store.delete(
                tenant=tenant, ids=["d1", "d3", "d5"], filter={"field": "i", "gte": 3}
            )
            == 2
        )
        assert {h.id for h in await store.search(tenant=tenant, vector=rows[0][1], k=10)} == {
            "d1",
            "d7",
            "d9",
        }
        with pytest.raises(InvalidRequest):
            await store.delete(tenant=tenant)

    # -- index version ----------------------------------------------------------

    async def test_index_version_bumps_on_every_write(self, store: VectorStore) -> None:
        rng = random.Random(9)
        tenant = new_tenant()
        versions = [await store.index_version(tenant=tenant)]
        await put(store, tenant, random_rows(rng, 3, self.DIM))
        versions.append(await store.index_version(tenant=tenant))
        await put(store, tenant, random_rows(rng, 1, self.DIM))
        versions.append(await store.index_version(tenant=tenant))
        await store.delete(tenant=tenant, ids=["d0"])
        versions.append(await store.index_version(tenant=tenant))
        await store.delete(tenant=tenant, filter={"field": "i", "exists": True})
        versions.append(await store.index_version(tenant=tenant))
        assert versions == sorted(set(versions)), versions
        await store.delete(tenant=tenant, ids=["never-there"])
        assert await store.index_version(tenant=tenant) >= versions[-1]

    # -- tenants ----------------------------------------------------------------

    async def test_same_id_in_two_tenants_is_two_rows(self, store: VectorStore) -> None:
        rng = random.Random(10)
        a, b = new_tenant(), new_tenant()
        vec = random_vector(rng, self.DIM)
        await put(store, a, [("x", vec, "a's", {"owner": "a"})])
        await put(store, b, [("x", vec, "b's", {"owner": "b"})])
        version_b = await store.index_version(tenant=b)
        assert [h.text for h in await store.search(tenant=a, vector=vec, k=5)] == ["a's"]
        assert await store.delete(tenant=a, ids=["x"]) == 1
        assert [h.text for h in await store.search(tenant=b, vector=vec, k=5)] == ["b's"]
        assert await store.count(tenant=b) == 1
        assert await store.index_version(tenant=b) == version_b

    @_PROPERTY
    @given(
        metas_a=st.lists(metadata(), min_size=0, max_size=25),
        metas_b=st.lists(metadata(), min_size=1, max_size=25),
        flt=st.one_of(st.none(), filters(max_leaves=5)),
        seed=st.integers(0, 2**32 - 1),
    )
    async def test_tenant_isolation_property(
        self,
        store: VectorStore,
        metas_a: list[dict[str, Any]],
        metas_b: list[dict[str, Any]],
        flt: Node | None,
        seed: int,
    ) -> None:
        """No query by tenant A returns tenant B's rows, under any filter."""
        rng = random.Random(seed)
        a, b = new_tenant(), new_tenant()
        # Overlapping ids ("s*") with different texts, plus ids only B has ("b*").
        rows_a = random_rows(rng, len(metas_a), self.DIM, prefix="s", metas=metas_a)
        rows_b = random_rows(rng, len(metas_b), self.DIM, prefix="s", metas=metas_b)
        rows_b += random_rows(rng, len(metas_b), self.DIM, prefix="b", metas=metas_b)
        rows_b = [(rid, vec, f"B:{rid}", meta) for rid, vec, _, meta in rows_b]
        if rows_a:
            await put(store, a, rows_a)
        await put(store, b, rows_b)
        raw = to_json(flt) if flt is not None else None
        own = {r[0]: r[2] for r in rows_a}
        for _, vec, _, _ in rows_b[:5]:
            hits = await store.search(tenant=a, vector=vec, k=50, filter=raw)
            for hit in hits:
                assert hit.id in own, hit
                assert hit.text == own[hit.id], hit
        assert await store.count(tenant=a, filter=raw) == sum(matches(flt, m) for m in metas_a)
        if raw is not None:
            await store.delete(tenant=a, filter=raw)
            assert await store.count(tenant=b) == len(rows_b)

    # -- lexical and hybrid (stores with a lexical index) ------------------------

    @pytest.fixture
    def lexical_store(self, store: VectorStore) -> LexicalStore:
        if not isinstance(store, LexicalStore):
            pytest.skip(f"{type(store).__name__} has no lexical index")
        return store

    async def test_lexical_search_examples(self, lexical_store: LexicalStore) -> None:
        store: Any = lexical_store
        tenant = new_tenant()
        texts = [
            "the worker retries a failed task",
            "queues per resource profile: parse and embed",
            "RetryError is raised after max_retries attempts",
            "retry budget and token budget",
        ]
        rows = with_texts(random_rows(random.Random(20), 4, self.DIM), texts)
        await put(store, tenant, rows)
        # Tokens: lower-cased runs of letters and digits, stopwords out, stemmed.
        hits = await store.search_lexical(tenant=tenant, query="Retry budgets", k=10)
        self.assert_lexical(hits, lexical_reference(rows, "Retry budgets", len(rows), None), 10)
        assert hits[0].id == "d3"
        assert hits[0].text == texts[3]
        assert hits[0].metadata == rows[3][3]
        if self.EXACT_BM25:
            # "retries", "max_retries" and "retry" stem alike; "RetryError" is one other word.
            assert {h.id for h in hits} == {"d0", "d2", "d3"}
        assert await store.search_lexical(tenant=tenant, query="the of", k=5) == []
        assert await store.search_lexical(tenant=tenant, query="zebra", k=5) == []
        assert await store.search_lexical(tenant=new_tenant(), query="queue", k=5) == []
        with pytest.raises(InvalidRequest):
            await store.search_lexical(tenant=tenant, query="queue", k=0)
        with pytest.raises(InvalidRequest, match="between"):
            await store.search_lexical(
                tenant=tenant, query="queue", k=1, filter={"field": "i", "between": 1}
            )

    async def test_lexical_index_follows_upserts_and_deletes(
        self, lexical_store: LexicalStore
    ) -> None:
        store: Any = lexical_store
        rng = random.Random(21)
        tenant = new_tenant()
        rows = with_texts(random_rows(rng, 30, self.DIM), random_texts(rng, 30))
        await put(store, tenant, rows)
        replaced = with_texts(rows[:5], random_texts(rng, 5, prefix="shard shard"))
        await put(store, tenant, replaced)
        rows = replaced + rows[5:]
        await store.delete(tenant=tenant, ids=["d7", "d8"])
        await store.delete(tenant=tenant, filter={"field": "i", "gte": 25})
        rows = [r for r in rows if r[0] not in {"d7", "d8"} and r[3]["i"] < 25]
        for query in ("shard", "queue worker", "pad timeout", "cache index token"):
            hits = await store.search_lexical(tenant=tenant, query=query, k=8)
            self.assert_lexical(hits, lexical_reference(rows, query, len(rows), None), 8)

    @_PROPERTY
    @given(
        metas=st.lists(metadata(), min_size=1, max_size=30),
        flt=st.one_of(st.none(), filters(max_leaves=5)),
        words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
        seed=st.integers(0, 2**32 - 1),
        k=st.integers(1, 12),
    )
    async def test_lexical_search_equals_bm25_reference(
        self,
        lexical_store: LexicalStore,
        metas: list[dict[str, Any]],
        flt: Node | None,
        words: list[str],
        seed: int,
        k: int,
    ) -> None:
        store: Any = lexical_store
        rng = random.Random(seed)
        tenant = new_tenant()
        rows = with_texts(
            random_rows(rng, len(metas), self.DIM, metas=metas), random_texts(rng, len(metas))
        )
        await put(store, tenant, rows)
        query = " ".join(words)
        raw = to_json(flt) if flt is not None else None
        hits = await store.search_lexical(tenant=tenant, query=query, k=k, filter=raw)
        self.assert_lexical(hits, lexical_reference(rows, query, len(rows), flt), k)

    @_PROPERTY
    @given(
        metas=st.lists(metadata(), min_size=1, max_size=30),
        flt=st.one_of(st.none(), filters(max_leaves=4)),
        words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
        seed=st.integers(0, 2**32 - 1),
        k=st.integers(1, 10),
        fusion=st.sampled_from(("rrf", "weighted", "gated")),
        alpha=st.sampled_from((0.0, 0.3, 0.5, 1.0)),
    )
    async def test_hybrid_search_equals_fused_references(
        self,
        lexical_store: LexicalStore,
        metas: list[dict[str, Any]],
        flt: Node | None,
        words: list[str],
        seed: int,
        k: int,
        fusion: Any,
        alpha: float,
    ) -> None:
        if not self.EXACT_BM25:
            pytest.skip("the store ranks with its own BM25; fusion is checked on exact stores")
        store: Any = lexical_store
        rng = random.Random(seed)
        tenant = new_tenant()
        rows = with_texts(
            random_rows(rng, len(metas), self.DIM, metas=metas), random_texts(rng, len(metas))
        )
        await put(store, tenant, rows)
        query, vector = " ".join(words), random_vector(rng, self.DIM)
        raw = to_json(flt) if flt is not None else None
        fetch = 2 * k
        dense = await store.search(tenant=tenant, vector=vector, k=fetch, filter=raw)
        lexical = await store.search_lexical(tenant=tenant, query=query, k=fetch, filter=raw)
        got = fuse(dense, lexical, k=k, fusion=fusion, alpha=alpha)
        by_id = {r[0]: r for r in rows}
        # The dense side is the store's own (its exactness is the dense contract's job, within
        # the store's precision: f16/int8 and HNSW may swap near-ties); the lexical side and
        # the fusion must match the references exactly.
        assert {h.id for h in dense} <= set(by_id)
        everything = lexical_reference(rows, query, len(rows), flt)
        self.assert_lexical(lexical, everything, fetch)
        # BM25 ties (same term counts, same length) may come in any order and may straddle the
        # cut-off; the reference takes the store's order within a tie so ranks are comparable.
        seen = {h.id: i for i, h in enumerate(lexical)}
        tied = sorted(everything, key=lambda r: (-r[1], seen.get(r[0], len(seen))))
        want_lexical = [Hit(id=rid, score=score) for rid, score in tied[:fetch]]
        want = fuse(list(dense), want_lexical, k=k, fusion=fusion, alpha=alpha)
        assert [(h.id, h.dense_rank, h.lexical_rank) for h in got] == [
            (h.id, h.dense_rank, h.lexical_rank) for h in want
        ]
        for hit, ref in zip(got, want, strict=True):
            assert hit.score == pytest.approx(ref.score, abs=1e-3)
            assert hit.text == by_id[hit.id][2]

    @_PROPERTY
    @given(
        metas=st.lists(metadata(), min_size=1, max_size=30),
        flt=st.one_of(st.none(), filters(max_leaves=4)),
        words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
        seed=st.integers(0, 2**32 - 1),
        k=st.integers(1, 10),
        fusion=st.sampled_from(("rrf", "weighted", "gated")),
        alpha=st.sampled_from((0.0, 0.3, 0.5, 0.7, 1.0)),
    )
    async def test_store_side_fusion_equals_fusing_its_two_searches(
        self,
        lexical_store: LexicalStore,
        metas: list[dict[str, Any]],
        flt: Node | None,
        words: list[str],
        seed: int,
        k: int,
        fusion: Any,
        alpha: float,
    ) -> None:
        """A store that fuses itself (``search_hybrid``) returns what fusing its own two
        searches returns: ids, ranks, scores, texts and metadata, filters and tenant applied."""
        if not isinstance(lexical_store, HybridStore):
            pytest.skip(f"{type(lexical_store).__name__} does not fuse itself")
        store: Any = lexical_store
        rng = random.Random(seed)
        tenant, other = new_tenant(), new_tenant()
        rows = with_texts(
            random_rows(rng, len(metas), self.DIM, metas=metas), random_texts(rng, len(metas))
        )
        await put(store, tenant, rows)
        # Another tenant's rows with the query's words and the same ids must change nothing.
        query, vector = " ".join(words), random_vector(rng, self.DIM)
        await put(store, other, with_texts(rows, [f"{query} {query}"] * len(rows)))
        raw = to_json(flt) if flt is not None else None
        depth = 2 * k
        dense = await store.search(tenant=tenant, vector=vector, k=depth, filter=raw)
        lexical = await store.search_lexical(tenant=tenant, query=query, k=depth, filter=raw)
        want = fuse(dense, lexical, k=k, fusion=fusion, alpha=alpha)
        got = await store.search_hybrid(
            tenant=tenant,
            vector=vector,
            query=query,
            k=k,
            depth=depth,
            filter=raw,
            fusion=fusion,
            alpha=alpha,
        )
        assert (got.dense_hits, got.lexical_hits) == (len(dense), len(lexical))
        assert [(h.id, h.dense_rank, h.lexical_rank, h.text, h.metadata) for h in got.hits] == [
            (h.id, h.dense_rank, h.lexical_rank, h.text, h.metadata) for h in want
        ]
        assert [h.score for h in got.hits] == pytest.approx([h.score for h in want])

    @_PROPERTY
    @given(
        metas_a=st.lists(metadata(), min_size=0, max_size=20),
        metas_b=st.lists(metadata(), min_size=1, max_size=20),
        flt=st.one_of(st.none(), filters(max_leaves=5)),
        words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
        seed=st.integers(0, 2**32 - 1),
    )
    async def test_lexical_tenant_isolation_property(
        self,
        lexical_store: LexicalStore,
        metas_a: list[dict[str, Any]],
        metas_b: list[dict[str, Any]],
        flt: Node | None,
        words: list[str],
        seed: int,
    ) -> None:
        """Tenant A's lexical hits are A's rows, scored by A's statistics only, under any
        filter, whatever B stores (B's texts repeat the query's words)."""
        store: Any = lexical_store
        rng = random.Random(seed)
        a, b = new_tenant(), new_tenant()
        query = " ".join(words)
        rows_a = with_texts(
            random_rows(rng, len(metas_a), self.DIM, prefix="s", metas=metas_a),
            random_texts(rng, len(metas_a)),
        )
        rows_b = random_rows(rng, len(metas_b), self.DIM, prefix="s", metas=metas_b)
        rows_b = with_texts(
            rows_b, [f"B {query} {query} {t}" for t in random_texts(rng, len(metas_b))]
        )
        if rows_a:
            await put(store, a, rows_a)
        await put(store, b, rows_b)
        raw = to_json(flt) if flt is not None else None
        hits = await store.search_lexical(tenant=a, query=query, k=50, filter=raw)
        self.assert_lexical(hits, lexical_reference(rows_a, query, len(rows_a), flt), 50)
        own = {r[0]: r[2] for r in rows_a}
        assert all(own.get(h.id) == h.text for h in hits)
