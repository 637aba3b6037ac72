"""``/v1/embeddings`` over real HTTP: the official openai SDK, and the ``openai`` embedder."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import openai
import pytest
from lanewise.core.auth import hash_key
from lanewise.core.container import build_components, close_components
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.server import serve_in_thread
from lanewise.retrieval.embedders.minilm import MiniLMEmbedder
from lanewise.retrieval.embedders.openai import OpenAIEmbedder

KEY = "sk-test-embeddings"
TEXTS = ["lanewise routes every workload to its own lane", "a cat sits on the mat"]


class UsageRecorder:
    def __init__(self) -> None:
        self.events = []

    @hookimpl
    def lanewise_on_usage(self, event):
        self.events.append(event)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return MiniLMEmbedder().embed_sync(TEXTS)


@pytest.fixture
def gateway(lanewise_settings, register_plugin):
    recorder = UsageRecorder()
    settings = lanewise_settings(
        gateway={"api_keys": [{"sha256": hash_key(KEY), "tenant": "acme"}]}
    )
    app = create_app(settings, plugin_manager=register_plugin(recorder))
    with serve_in_thread(app) as base:
        yield base, recorder


def test_official_sdk_gets_base64_embeddings(gateway, reference):
    base, recorder = gateway
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)
    got = np.array([d.embedding for d in result.data])
    assert got.shape == (2, 384)
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert result.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert result.usage.prompt_tokens > len(TEXTS)
    (event,) = recorder.events
    assert event.operation == "embedding"
    assert event.principal.tenant == "acme"
    assert event.usage.prompt_tokens == result.usage.prompt_tokens


def test_float_encoding_and_single_string(gateway, reference):
    base, _ = gateway
    r = httpx.post(
        f"{base}/v1/embeddings",
        json={"model": "minilm", "input": TEXTS[0], "encoding_format": "float"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 200
    (item,) = r.json()["data"]
    assert item["index"] == 0
    np.testing.assert_allclose(item["embedding"], reference[0], atol=1e-5)


def test_requires_an_api_key(gateway):
    base, _ = gateway
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.embeddings.create(model="all-MiniLM-L6-v2", input="x")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": "all-MiniLM-L6-v2", "input": []}, 400, "input"),
        ({"model": "all-MiniLM-L6-v2", "input": ["ok", "  "]}, 400, "input[1]"),
        ({"model": "all-MiniLM-L6-v2", "input": [[1, 2, 3]]}, 400, "input[0]"),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 128}, 400, "dimensions"),
        ({"model": "text-embedding-3-small", "input": "x"}, 404, None),
    ],
)
def test_bad_requests_are_problems(gateway, body, status, field):
    base, _ = gateway
    r = httpx.post(f"{base}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert r.json()["field"] == field


def test_openai_embedder_against_our_own_gateway(gateway, reference, lanewise_settings, tmp_path):
    base, _ = gateway
    settings = lanewise_settings(
        data_dir=tmp_path / "client",
        retrieval={
            "embedder": {
                "kind": "openai",
                "base_url": f"{base}/v1",
                "model": "all-MiniLM-L6-v2",
                "dimension": 384,
                "api_key": KEY,
                "version": "onnx-8199be6f699a395f",
                "batch_size": 1,
            }
        },
    )
    container = build_components(settings, get_plugin_manager(None))
    embedder = container.embedder()
    assert isinstance(embedder.inner, OpenAIEmbedder)
    assert embedder.id == "openai:all-MiniLM-L6-v2"

    async def run():
        try:
            return await embedder.embed(TEXTS)
        finally:
            await close_components(container)

    got = np.array(asyncio.run(run()))
    np.testing.assert_allclose(got, reference, atol=1e-5)


async def test_openai_embedder_reports_upstream_failures(gateway):
    from lanewise.core.errors import UpstreamError

    base, _ = gateway
    wrong_dim = OpenAIEmbedder(base_url=f"{base}/v1", model="minilm", dimension=512, api_key=KEY)
    unauthorised = OpenAIEmbedder(base_url=f"{base}/v1", model="minilm", dimension=384)
    try:
        with pytest.raises(UpstreamError, match="dimension"):
            await wrong_dim.embed(["x"])
        with pytest.raises(UpstreamError, match="401"):
            await unauthorised.embed(["x"])
    finally:
        await wrong_dim.aclose()
        await unauthorised.aclose()
