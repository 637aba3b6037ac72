"""The ``triton`` embedder against the real bundled tritonserver serving ``deploy/triton/cpu``.

The server comes from the inference lane's test helpers (tests may cross lanes;
the retrieval package itself never imports lanewise.inference). It serves the
reference repository, LLM models and ``minilm`` together, as ``lanewise serve
triton`` does.
"""

from __future__ import annotations

import ast
import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from lanewise.core.auth import hash_key
from lanewise.core.container import build_components, close_components
from lanewise.core.errors import ConfigError, Unavailable, UpstreamError
from lanewise.core.gateway.app import create_app
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.server import free_port, serve_in_thread
from lanewise.inference.triton.server import (
    CPU_MODELS,
    TritonServer,
    TritonUnavailable,
    default_cpu_repository,
)
from lanewise.inference.triton.testing import start_cpu_triton
from lanewise.retrieval.embedders import minilm
from lanewise.retrieval.embedders.minilm import TOKENIZER_PATH, MiniLMEmbedder
from lanewise.retrieval.embedders.triton import TritonEmbedder

KEY = "sk-test-triton-embeddings"
TEXTS = [
    "lanewise routes every workload to its own lane",
    "a cat sits on the mat",
    "Der Gateway zählt Token pro Mandant.",
    "x",
]
MODEL_DIR = default_cpu_repository() / "minilm"


def varied_texts(n: int) -> list[str]:
    words = ["retrieval", "lane", "embeds", "queries", "with", "MiniLM", "on", "onnx", "triton"]
    return [" ".join(words[: 1 + i % len(words)] * (1 + i % 7)) + f" #{i}" for i in range(n)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    server = start_cpu_triton(tmp_path_factory.mktemp("triton-embed"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def in_process() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def stats(server: TritonServer) -> tuple[int, int]:
    """(inference_count, execution_count) of ``minilm``: items embedded, onnxruntime runs."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        (model,) = client.get_inference_statistics("minilm", as_json=True)["model_stats"]
    finally:
        client.close()
    return int(model.get("inference_count", 0)), int(model.get("execution_count", 0))


def stats_since(server: TritonServer, before: tuple[int, int], items: int) -> tuple[int, int]:
    """Counts since ``before``; Triton updates them just after it answers, so wait for them."""
    for _ in range(100):
        now = stats(server)
        delta = (now[0] - before[0], now[1] - before[1])
        if delta[0] >= items:
            return delta
        time.sleep(0.05)
    return delta


def test_reference_deployment_serves_minilm() -> None:
    assert "minilm" in CPU_MODELS


def test_model_copies_the_in_process_maths() -> None:
    """model.py is self-contained; its copies of the tokenizer and pooling must not drift."""
    assert (MODEL_DIR / "tokenizer.json").read_bytes() == TOKENIZER_PATH.read_bytes()
    source = (MODEL_DIR / "1" / "model.py").read_text(encoding="utf-8")
    (fn,) = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "mean_pool_normalise"
    ]
    namespace: dict[str, object] = {"np": np, "Any": object}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "model.py", "exec"), namespace)
    rng = np.random.default_rng(7)
    states = rng.normal(size=(5, 9, 384)).astype(np.float32)
    mask = (rng.random((5, 9)) > 0.3).astype(np.int64)
    mask[:, 0] = 1
    np.testing.assert_array_equal(
        namespace["mean_pool_normalise"](states, mask),  # type: ignore[operator]
        minilm.mean_pool_normalise(states, mask),
    )


async def test_vectors_match_the_in_process_embedder(triton, in_process) -> None:
    embedder = TritonEmbedder(url=triton.grpc_url)
    try:
        assert await embedder.check() is None
        got = np.array(await embedder.embed(TEXTS))
    finally:
        await embedder.aclose()
    assert got.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosines(got, in_process.embed_sync(TEXTS)).min() >= 0.999
    # Interchangeable vectors, so the same id + version (stored vectors and cache stay valid).
    assert (embedder.id, embedder.version) == (in_process.id, in_process.version)
    assert embedder.count_tokens(TEXTS) == in_process.count_tokens(TEXTS)


async def test_hundred_texts_in_batched_requests_keep_their_order(triton, in_process) -> None:
    texts = varied_texts(100)
    before = stats(triton)
    embedder = TritonEmbedder(url=triton.grpc_url, batch_size=32, max_concurrency=4)
    try:
        got = np.array(await embedder.embed(texts))
    finally:
        await embedder.aclose()
    items, runs = stats_since(triton, before, items=100)
    assert got.shape == (100, 384)
    assert cosines(got, in_process.embed_sync(texts)).min() >= 0.999
    # 100 items arrived as 4 requests of <= 32: at most 4 onnxruntime runs, never one per text.
    assert items == 100
    assert 1 <= runs <= 4


async def test_batch_size_is_capped_by_the_models_max_batch_size(triton) -> None:
    embedder = TritonEmbedder(url=triton.grpc_url, batch_size=1000)
    try:
        got = await embedder.embed(varied_texts(70))  # one request of 70 would be refused (64)
    finally:
        await embedder.aclose()
    assert len(got) == 70


async def test_empty_list_sends_nothing() -> None:
    # Nothing listens on this port: an empty input must not even connect.
    embedder = TritonEmbedder(url=f"127.0.0.1:{free_port()}")
    try:
        assert await embedder.embed([]) == []
    finally:
        await embedder.aclose()


async def test_triton_down_is_unavailable_with_retry_after(tmp_path) -> None:
    server = TritonServer(default_cpu_repository(), models=("minilm",), workdir=tmp_path)
    server.start()
    embedder = TritonEmbedder(url=server.grpc_url, timeout_s=5.0, check_timeout_s=1.0)
    try:
        assert len(await embedder.embed(["up"])) == 1
        server.kill()
        with pytest.raises(Unavailable) as info:
            await embedder.embed(["down"])
        assert info.value.retry_after_s == 1.0
        assert server.grpc_url in info.value.detail
        reason = await embedder.check()
        assert reason is not None
        assert server.grpc_url in reason
    finally:
        await embedder.aclose()
        server.stop()


async def test_never_started_triton_is_unavailable() -> None:
    embedder = TritonEmbedder(url=f"127.0.0.1:{free_port()}", timeout_s=2.0)
    try:
        with pytest.raises(Unavailable) as info:
            await embedder.embed(["hello"])
        assert info.value.retry_after_s == 1.0
    finally:
        await embedder.aclose()


async def test_refuses_a_model_with_other_weights(triton) -> None:
    embedder = TritonEmbedder(url=triton.grpc_url)
    embedder.weights_sha256 = "0" * 64  # as if this embedder's version named other weights
    try:
        with pytest.raises(UpstreamError, match="weights_sha256"):
            await embedder.embed(["hello"])
        assert "weights_sha256" in (await embedder.check() or "")
    finally:
        await embedder.aclose()


async def test_unknown_model_is_reported(triton) -> None:
    embedder = TritonEmbedder(url=triton.grpc_url, model="no-such-model")
    try:
        with pytest.raises((UpstreamError, Unavailable), match="no-such-model"):
            await embedder.embed(["hello"])
        assert "no-such-model" in (await embedder.check() or "")
    finally:
        await embedder.aclose()


def test_server_refuses_to_load_other_weights(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(MODEL_DIR, repo / "minilm", ignore=shutil.ignore_patterns("__pycache__"))
    config = repo / "minilm" / "config.pbtxt"
    text = config.read_text(encoding="utf-8")
    sha = minilm.bundled_model()[1]
    config.write_text(text.replace(sha, "f" * 64), encoding="utf-8")
    server = TritonServer(repo, models=("minilm",), workdir=tmp_path / "work")
    with pytest.raises(TritonUnavailable):
        server.start(timeout_s=60)
    assert "pins " + "f" * 64 in server.log_path.read_text(encoding="utf-8", errors="replace")


def test_gateway_embeddings_through_triton(triton, in_process, lanewise_settings) -> None:
    settings = lanewise_settings(
        gateway={"api_keys": [{"sha256": hash_key(KEY), "tenant": "acme"}]},
        retrieval={"embedder": {"kind": "triton", "url": triton.grpc_url, "batch_size": 2}},
    )
    with serve_in_thread(create_app(settings)) as base:
        r = httpx.post(
            f"{base}/v1/embeddings",
            json={"model": "triton", "input": TEXTS, "encoding_format": "float"},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=60,
        )
    assert r.status_code == 200, r.text
    body = r.json()
    got = np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])])
    assert cosines(got, in_process.embed_sync(TEXTS)).min() >= 0.999
    assert body["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert body["usage"]["prompt_tokens"] == in_process.count_tokens(TEXTS)


def test_gateway_answers_503_with_retry_after_when_triton_is_down(lanewise_settings) -> None:
    settings = lanewise_settings(
        gateway={"api_keys": [{"sha256": hash_key(KEY), "tenant": "acme"}]},
        retrieval={"embedder": {"kind": "triton", "url": f"127.0.0.1:{free_port()}"}},
    )
    with serve_in_thread(create_app(settings)) as base:
        r = httpx.post(
            f"{base}/v1/embeddings",
            json={"model": "triton", "input": ["hello"]},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=60,
        )
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({}, "retrieval.embedder.url"),
        ({"url": "h:1", "batch_size": 0}, "retrieval.embedder.batch_size"),
        ({"url": "h:1", "timeout_s": 0}, "retrieval.embedder.timeout_s"),
        ({"url": "h:1", "bogus": 1}, "retrieval.embedder.bogus"),
    ],
)
def test_bad_options_name_the_key(lanewise_settings, options, key) -> None:
    settings = lanewise_settings(retrieval={"embedder": {"kind": "triton", **options}})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_components(settings, get_plugin_manager(None)).embedder()


def test_factory_builds_with_defaults(lanewise_settings) -> None:
    settings = lanewise_settings(retrieval={"embedder": {"kind": "triton", "url": "h:8001"}})
    container = build_components(settings, get_plugin_manager(None))
    try:
        embedder = container.embedder().inner
        assert isinstance(embedder, TritonEmbedder)
        assert (embedder.url, embedder.model, embedder.batch_size) == ("h:8001", "minilm", 32)
    finally:
        asyncio.run(close_components(container))


def test_readyz_checks_the_triton_embedder(triton, lanewise_settings, tmp_path) -> None:
    def readyz(url: str) -> httpx.Response:
        settings = lanewise_settings(
            data_dir=tmp_path / url.replace(":", "_"),
            retrieval={"embedder": {"kind": "triton", "url": url}},
        )
        with serve_in_thread(create_app(settings)) as base:
            return httpx.get(f"{base}/readyz", timeout=30)

    up = readyz(triton.grpc_url)
    assert up.status_code == 200, up.text
    assert up.json()["checks"]["embedder:triton"] == "ok"
    dead = f"127.0.0.1:{free_port()}"
    down = readyz(dead)
    assert down.status_code == 503
    assert down.json()["failing"] == ["embedder:triton"]
    assert dead in down.json()["checks"]["embedder:triton"]
