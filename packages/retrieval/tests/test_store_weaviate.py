"""The Weaviate store: configuration and naming here; the shared contract against a real
server only when ``WEAVIATE_URL`` is set (no Weaviate server can run on these machines)."""

from __future__ import annotations

import os
import uuid

import pytest
from lanewise.core.errors import ConfigError
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
        ({"alpha": 1.5}, "alpha"),
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
        alpha=0.5,
        api_key_env="WV_KEY",
        grpc_port=443,
    )
    store = build_weaviate(
        factory_context(config, key="retrieval.vector_store", settings=lanewise_settings())
    )
    assert (store.url, store.dimension, store.consistency_level, store.alpha) == (
        "https://weaviate.example:443",
        384,
        "QUORUM",
        0.5,
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


def test_registered_as_a_vector_store_kind():
    names = collect(get_plugin_manager(None), "vector store").names()
    assert {"embedded", "pgvector", "weaviate"} <= set(names)
