"""``triton``: all-MiniLM-L6-v2 served by Triton (``deploy/triton/cpu/minilm``) over gRPC.

Same id and version as the in-process ``minilm`` embedder, on purpose: the
Triton model runs the same int8 ONNX file (it refuses to load a file whose
sha256 differs from ``weights_sha256`` in its ``config.pbtxt``), the same
tokenizer, truncation, mean pooling and normalisation, and a test holds the
two to cosine >= 0.999. So an index built with one is searched with the other
and the query-embedding cache stays valid when a deployment moves embedding
into the inference lane. The embedder checks that claim instead of trusting
it: before its first request (and in ``check()``) it reads the served model's
config and refuses a model whose ``weights_sha256`` is not the one its version
names, or whose output is not 384-d.

Texts go out in requests of ``batch_size`` (at most the model's
``max_batch_size``), up to ``max_concurrency`` at once, so Triton's dynamic
batcher can merge them with other clients' requests. ``tritonclient`` is the
optional extra ``lanewise-retrieval[triton]``; it is imported when this
embedder is built, never by the default one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from lanewise.core.aio import LoopLocal
from lanewise.core.errors import (
    ConfigError,
    LanewiseError,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from lanewise.retrieval.embedders.minilm import (
    DIMENSION,
    MAX_SEQ_LENGTH,
    MODEL_ID,
    TOKENIZER_PATH,
    bundled_model,
    load_tokenizer,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

RETRY_AFTER_S = 1.0


def expected_weights_sha256() -> str:
    """The sha256 of the weights ``minilm`` runs: what the served model must pin too."""
    _, sha = bundled_model()
    return sha


def import_client() -> Any:
    try:
        import tritonclient.grpc.aio as grpcaio
    except ImportError:
        raise ConfigError(
            "retrieval.embedder.kind = 'triton' needs tritonclient; "
            "install lanewise-retrieval[triton]"
        ) from None
    return grpcaio


class TritonEmbedder:
    """384-d, L2-normalised vectors from a Triton ``minilm`` model."""

    dimension = DIMENSION

    def __init__(
        self,
        *,
        url: str,
        model: str = "minilm",
        batch_size: int = 32,
        max_concurrency: int = 4,
        timeout_s: float = 30.0,
        check_timeout_s: float = 2.0,
        name: str = "embedder:triton",
    ) -> None:
        self._grpcaio = import_client()
        self.url = url
        self.model = model
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.check_timeout_s = check_timeout_s
        self.name = name
        self.weights_sha256 = expected_weights_sha256()
        self.id = MODEL_ID
        self.version = f"onnx-{self.weights_sha256[:16]}"
        # (client, request slots): both belong to the event loop that made them.
        self._connection: LoopLocal[tuple[Any, asyncio.Semaphore]] = LoopLocal(
            lambda: (
                self._grpcaio.InferenceServerClient(self.url),
                asyncio.Semaphore(self.max_concurrency),
            )
        )
        self._verified_batch: int | None = None
        self._tokenizer: Tokenizer | None = None

    # -- connection ------------------------------------------------------------------
    def _client_for_loop(self) -> Any:
        return self._connection.get()[0]

    async def aclose(self) -> None:
        connection = self._connection.take()
        if connection is not None:
            await connection[0].close()

    # -- health ---------------------------------------------------------------------
    async def check(self) -> str | None:
        """None when Triton serves a model whose vectors match this embedder's version."""
        client = self._client_for_loop()
        try:
            if not await client.is_model_ready(self.model, client_timeout=self.check_timeout_s):
                return f"model {self.model!r} is not ready on triton at {self.url}"
            await self._verify(client, self.check_timeout_s)
        except LanewiseError as exc:
            return exc.detail
        except Exception as exc:  # a health check reports, never raises
            return self._error(exc).detail
        return None

    async def _verify(self, client: Any, timeout_s: float) -> int:
        """Read the served model's config once; returns the batch size to send."""
        if self._verified_batch is not None:
            return self._verified_batch
        try:
            answer = await client.get_model_config(
                self.model, as_json=True, client_timeout=timeout_s
            )
        except Exception as exc:  # mapped to a lanewise error below
            raise self._error(exc) from None
        config: dict[str, Any] = answer.get("config", {})
        parameters: dict[str, Any] = config.get("parameters", {})
        served = str(parameters.get("weights_sha256", {}).get("string_value", ""))
        if served != self.weights_sha256:
            raise UpstreamError(
                f"triton model {self.model!r} at {self.url} pins weights_sha256 "
                f"{served or '(none)'}, but {self.id}@{self.version} needs "
                f"{self.weights_sha256}; its vectors would not match stored ones",
                url=self.url,
            )
        outputs: list[dict[str, Any]] = config.get("output", [])
        dims = [int(d) for d in (outputs[0].get("dims", []) if outputs else [])]
        if dims != [DIMENSION]:
            raise UpstreamError(
                f"triton model {self.model!r} at {self.url} outputs dims {dims}, expected "
                f"[{DIMENSION}]",
                url=self.url,
            )
        max_batch = int(config.get("max_batch_size", 0) or 0)
        self._verified_batch = min(self.batch_size, max_batch) if max_batch > 0 else 1
        return self._verified_batch

    # -- embedding -------------------------------------------------------------------
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        client = self._client_for_loop()
        batch = await self._verify(client, self.timeout_s)
        # As in process: sorting by length keeps each request's padding (wasted work) small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks = [[texts[i] for i in order[s : s + batch]] for s in range(0, len(order), batch)]
        parts = await asyncio.gather(*(self._embed_chunk(client, chunk) for chunk in chunks))
        matrix = np.empty((len(texts), DIMENSION), dtype=np.float32)
        matrix[order] = np.concatenate(parts, axis=0)
        result: list[list[float]] = matrix.tolist()
        return result

    async def _embed_chunk(self, client: Any, texts: list[str]) -> Any:
        item = self._grpcaio.InferInput("text", [len(texts), 1], "BYTES")
        item.set_data_from_numpy(np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_))
        output = self._grpcaio.InferRequestedOutput("embedding")
        async with self._connection.get()[1]:
            try:
                answer = await client.infer(
                    self.model, [item], outputs=[output], client_timeout=self.timeout_s
                )
            except Exception as exc:  # mapped to a lanewise error below
                raise self._error(exc) from None
        matrix = answer.as_numpy("embedding")
        if matrix is None or matrix.shape != (len(texts), DIMENSION):
            shape = None if matrix is None else matrix.shape
            raise UpstreamError(
                f"triton model {self.model!r} returned shape {shape}, expected "
                f"({len(texts)}, {DIMENSION})",
                url=self.url,
            )
        return matrix.astype(np.float32, copy=False)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model sees, counted with the same tokenizer the server runs."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(TOKENIZER_PATH, MAX_SEQ_LENGTH)
        encodings = self._tokenizer.encode_batch(list(texts))
        return sum(sum(e.attention_mask) for e in encodings)

    # -- errors ----------------------------------------------------------------------
    def _error(self, exc: Exception) -> LanewiseError:
        status = str(getattr(exc, "status", lambda: "")() or "")
        message = exc.message() if hasattr(exc, "message") else str(exc)
        message = str(message).splitlines()[0][:300] if message else type(exc).__name__
        if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in message:
            return UpstreamTimeout(
                f"triton at {self.url} did not embed within {self.timeout_s:g}s",
                deadline_s=self.timeout_s,
            )
        if "UNAVAILABLE" in status:
            # The server that comes back may serve another model: verify it again.
            self._verified_batch = None
            return Unavailable(
                f"triton at {self.url} is unavailable: {message}",
                retry_after_s=RETRY_AFTER_S,
                url=self.url,
            )
        return UpstreamError(f"triton at {self.url} failed: {message}", url=self.url)
