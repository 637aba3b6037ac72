"""The Weaviate store: configuration and naming here; the shared contract against a real
server only when ``WEAVIATE_URL`` is set (no Weaviate server can run on these machines)."""

from __future__ import annotations

import json
import os
import uuid
from types import SimpleNamespace

import pytest
from lanewise.core.errors import ConfigError, InvalidRequest
from lanewise.core.plugins import collect, get_plugin_manager
from lanewise.core.settings import ComponentConfig
from lanewise.core.testing import factory_context
from lanewise.retrieval.contract import VectorStoreContract
from lanewise.retrieval.stores.weaviate import (
    WeaviateStore,
    build_weaviate,
    object_uuid,
    weaviate_tenant,
)

WEAVIATE_URL = os.environ.get("WEAVIATE_URL")


def importable_client():
    # The workspace pins tritonclient 2.66 (protobuf 5.x) so that weaviate-client imports;
    # an import failure here is a regression of that pin, not a reason to skip.
    import weaviate  # noqa: F401


@pytest.mark.weaviate
@pytest.mark.skipif(
    WEAVIATE_URL is None,
    reason="WEAVIATE_URL is not set: no Weaviate server runs on these machines; "
    "set WEAVIATE_URL=http://host:8080 (gRPC on 50051) to run the shared contract against one",
)
class TestWeaviateContract(VectorStoreContract):
    EXACT_BM25 = False  # Weaviate's own BM25: its word tokenizer, no stemming

    @pytest.fixture
    async def store(self):
        importable_client()
        store = WeaviateStore(
            url=WEAVIATE_URL,
            dimension=self.DIM,
            collection=f"LanewiseTest{uuid.uuid4().hex[:10]}",
            consistency_level="ONE",
        )
        yield store
        client = store._client
        if client is not None:
            await client.collections.delete(
                [store.collection_name, store.collection_name + "Versions"]
            )
        await store.aclose()


def test_tenant_names_are_weaviate_safe_and_stable():
    assert weaviate_tenant("acme-eu_1") == "acme-eu_1"
    hashed = weaviate_tenant("acme/eu 1")
    assert hashed.startswith("t_")
    assert len(hashed) <= 64
    assert hashed == weaviate_tenant("acme/eu 1")
    assert weaviate_tenant("x" * 65) != weaviate_tenant("x" * 66)


def test_object_uuids_are_deterministic_per_id():
    assert object_uuid("doc-1") == object_uuid("doc-1")
    assert object_uuid("doc-1") != object_uuid("doc-2")


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"collection": "lowercase"}, "collection"),
        ({"consistency_level": "SOME"}, "consistency_level"),
    ],
)
def test_bad_configuration_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        WeaviateStore(url="http://localhost:8080", dimension=8, **kwargs)


def test_factory_reads_options(lanewise_settings, monkeypatch):
    monkeypatch.setenv("WV_KEY", "secret")
    config = ComponentConfig(
        kind="weaviate",
        url="https://weaviate.example:443",
        dimension=384,
        consistency_level="QUORUM",
        api_key_env="WV_KEY",
        grpc_port=443,
    )
    store = build_weaviate(
        factory_context(config, key="retrieval.vector_store", settings=lanewise_settings())
    )
    assert (store.url, store.dimension, store.consistency_level) == (
        "https://weaviate.example:443",
        384,
        "QUORUM",
    )
    assert store.api_key == "secret"
    assert store.grpc_port == 443
    with pytest.raises(ConfigError, match=r"retrieval\.vector_store\.url"):
        build_weaviate(
            factory_context(
                ComponentConfig(kind="weaviate"),
                key="retrieval.vector_store",
                settings=lanewise_settings(),
            )
        )
    with pytest.raises(ConfigError, match=r"retrieval\.vector_store\.bogus"):
        build_weaviate(
            factory_context(
                ComponentConfig(kind="weaviate", url="http://x", bogus=1),
                key="retrieval.vector_store",
            )
        )
    with pytest.raises(ConfigError, match=r"retrieval\.vector_store\.alpha is not an option"):
        # Hybrid weighting is the retriever's now (retrieval.alpha), the same for every store.
        build_weaviate(
            factory_context(
                ComponentConfig(kind="weaviate", url="http://x", alpha=0.5),
                key="retrieval.vector_store",
            )
        )


class RecordingQuery:
    """Stands in for a Weaviate collection's ``query`` namespace (no Weaviate server can run
    on these machines): records each call's arguments and answers with canned objects."""

    def __init__(self, objects):
        self.objects = objects
        self.calls = []

    async def near_vector(self, **kwargs):
        self.calls.append(("near_vector", kwargs))
        return SimpleNamespace(objects=self.objects)

    async def bm25(self, **kwargs):
        self.calls.append(("bm25", kwargs))
        return SimpleNamespace(objects=self.objects)


def result_object(rid, text, meta, *, score=None, distance=None):
    return SimpleNamespace(
        properties={"lw_id": rid, "text": text, "metadata_json": json.dumps(meta)},
        metadata=SimpleNamespace(score=score, distance=distance),
    )


@pytest.fixture
def recorded(monkeypatch):
    importable_client()
    store = WeaviateStore(url="http://localhost:8080", dimension=4)
    store._known = {"text", "lw_id", "metadata_json", "m_lang__s"}
    query = RecordingQuery(
        [
            result_object("a", "retry budget", {"lang": "en", "source": "a.md"}, score=2.5),
            result_object("b", "budget", {"lang": "en"}, score=0.75, distance=0.25),
        ]
    )
    tenants = []

    async def collection(tenant, *, versions=False):
        tenants.append(tenant)
        return SimpleNamespace(query=query)

    monkeypatch.setattr(store, "_collection", collection)
    return store, query, tenants


async def test_lexical_search_is_a_bm25_query_on_text(recorded):
    store, query, tenants = recorded
    hits = await store.search_lexical(
        tenant="acme", query="retry budget", k=3, filter={"field": "lang", "eq": "en"}
    )
    ((method, args),) = query.calls
    assert method == "bm25"
    assert tenants == ["acme"]
    assert (args["query"], args["query_properties"], args["limit"]) == ("retry budget", ["text"], 3)
    assert args["return_metadata"].score is True
    assert args["return_properties"] == ["lw_id", "text", "metadata_json"]
    flt = args["filters"]
    assert (flt.target, flt.value, flt.operator.value) == ("m_lang__s", "en", "Equal")
    assert [(h.id, h.score, h.text, h.source) for h in hits] == [
        ("a", 2.5, "retry budget", "a.md"),
        ("b", 0.75, "budget", ""),
    ]
    assert hits[0].metadata == {"lang": "en", "source": "a.md"}


async def test_dense_search_is_a_near_vector_query_scored_by_cosine(recorded):
    store, query, _ = recorded
    hits = await store.search(tenant="acme", vector=[2.0, 0.0, 0.0, 0.0], k=2)
    ((method, args),) = query.calls
    assert method == "near_vector"
    assert args["near_vector"] == [1.0, 0.0, 0.0, 0.0]  # unit length, as every store ranks
    assert args["filters"] is None
    assert args["limit"] == 2
    assert args["return_metadata"].distance is True
    assert [h.score for h in hits] == [1.0, 0.75]


async def test_a_filter_on_an_unwritten_field_queries_nothing(recorded):
    store, query, _ = recorded
    flt = {"field": "never_written", "eq": "x"}
    assert await store.search_lexical(tenant="acme", query="budget", k=3, filter=flt) == []
    assert query.calls == []
    with pytest.raises(InvalidRequest):
        await store.search_lexical(tenant="acme", query="budget", k=0)


def test_registered_as_a_vector_store_kind():
    names = collect(get_plugin_manager(None), "vector store").names()
    assert {"embedded", "pgvector", "weaviate"} <= set(names)
