"""The shared contract suite against the embedded store (SQLite + faiss), exact and HNSW paths."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lanewise.core.container import build_components
from lanewise.core.errors import ConfigError
from lanewise.core.settings import ComponentConfig
from lanewise.core.testing import factory_context
from lanewise.retrieval.contract import VectorStoreContract, put, random_rows, random_vector
from lanewise.retrieval.stores import EmbeddedStore, IndexParams, build_embedded


class TestEmbeddedContract(VectorStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
        s = EmbeddedStore(tmp_path / "v.sqlite3", IndexParams(dimension=self.DIM))
        yield s
        await s.aclose()


class TestEmbeddedContractThroughHnsw(VectorStoreContract):
    """No exact plan: every search walks the HNSW graph (with its exact fallback)."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
        params = IndexParams(dimension=self.DIM, exact_limit=0, exact_fraction=0.0, ef_search=200)
        s = EmbeddedStore(tmp_path / "v.sqlite3", params)
        yield s
        await s.aclose()


class TestEmbeddedContractF16(VectorStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
        s = EmbeddedStore(tmp_path / "v.sqlite3", IndexParams(dimension=self.DIM, precision="f16"))
        yield s
        await s.aclose()


async def test_container_builds_embedded_store_by_default(
    lanewise_settings: Any, register_plugin: Any
) -> None:
    settings = lanewise_settings(retrieval={"vector_store": {"kind": "embedded", "dimension": 4}})
    container = build_components(settings, register_plugin())
    store = container.vector_store()
    assert isinstance(store, EmbeddedStore)
    assert store.path == settings.data_dir / "vectors.sqlite3"
    await store.upsert(tenant="t", ids=["a"], vectors=[[1, 0, 0, 0]], texts=["x"], metadata=[{}])
    assert await store.count(tenant="t") == 1
    await store.aclose()


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"precision": "f8"}, ["retrieval.vector_store.precision", "f32, f16, int8"]),
        ({"m": 2}, ["retrieval.vector_store.m", ">= 4"]),
        ({"colour": 1}, ["retrieval.vector_store.colour", "ef_search"]),
    ],
)
def test_bad_options_name_the_key(
    lanewise_settings: Any, options: dict[str, Any], names: list[str]
) -> None:
    config = ComponentConfig(kind="embedded", **{"dimension": 4, **options})
    with pytest.raises(ConfigError) as caught:
        build_embedded(
            factory_context(config, key="retrieval.vector_store", settings=lanewise_settings())
        )
    for name in names:
        assert name in caught.value.detail


async def test_reopen_with_other_dimension_and_second_owner_fail(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "v.sqlite3", IndexParams(dimension=4))
    with pytest.raises(ConfigError, match="another process"):
        EmbeddedStore(tmp_path / "v.sqlite3", IndexParams(dimension=4))
    await store.aclose()
    with pytest.raises(ConfigError, match=r"dimension is 8 but .* holds 4-d"):
        EmbeddedStore(tmp_path / "v.sqlite3", IndexParams(dimension=8))


async def test_snapshot_is_used_only_while_current(tmp_path: Path) -> None:
    rng = random.Random(0)
    path = tmp_path / "v.sqlite3"
    params = IndexParams(dimension=8, exact_limit=0)
    rows = random_rows(rng, 3000, 8)
    store = EmbeddedStore(path, params)
    await put(store, "t", rows)
    await store.delete(tenant="t", ids=["d5"])
    await store.snapshot()
    query = random_vector(rng, 8)
    before = await store.search(
        tenant="t", vector=query, k=10, filter={"field": "even", "eq": True}
    )
    await store.aclose()

    store = EmbeddedStore(path, params)
    assert store._load_snapshot("t") is not None
    after = await store.search(tenant="t", vector=query, k=10, filter={"field": "even", "eq": True})
    assert [(h.id, h.text, h.metadata) for h in after] == [
        (h.id, h.text, h.metadata) for h in before
    ]
    assert await store.count(tenant="t") == 2999
    await put(store, "t", [("new", query, "new", {"even": True})])
    assert store._load_snapshot("t") is None  # stale: the tenant moved on
    await store.aclose()

    store = EmbeddedStore(path, params)
    hits = await store.search(tenant="t", vector=query, k=1)
    assert hits[0].id == "new"
    await store.aclose()


async def test_concurrent_searches_and_writes(tmp_path: Path) -> None:
    rng = random.Random(3)
    store = EmbeddedStore(tmp_path / "v.sqlite3", IndexParams(dimension=8, exact_limit=0))
    stable = random_rows(rng, 500, 8, prefix="s")
    await put(store, "t", stable)

    async def churn() -> None:
        for round_ in range(20):
            rows = random_rows(rng, 20, 8, prefix=f"c{round_}-")
            await put(store, "t", rows)
            await store.delete(tenant="t", ids=[r[0] for r in rows[:10]])

    async def look(i: int) -> None:
        vec = stable[i][1]
        hits = await store.search(tenant="t", vector=vec, k=5)
        assert hits[0].id == stable[i][0]
        assert all(h.text for h in hits)

    await asyncio.gather(churn(), *(look(i) for i in range(0, 500, 5)))
    assert await store.count(tenant="t") == 500 + 20 * 10
    await store.aclose()
