"""``openai``: any server that speaks OpenAI's ``/v1/embeddings`` (vLLM, TEI, NIM, lanewise).

Vectors are L2-normalised here (unless ``normalise = false``) so stores can
use inner product regardless of what the server returns. ``id`` and
``version`` come from configuration: a remote model's weights cannot be
inspected, so whoever points lanewise at it names the version, and changing
it keeps new vectors from mixing with old ones.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np
from lanewise.core.errors import UpstreamError, UpstreamTimeout


class OpenAIEmbedder:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dimension: int,
        api_key: str | None = None,
        id: str | None = None,
        version: str = "1",
        batch_size: int = 64,
        timeout_s: float = 30.0,
        normalise: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.id = id or f"openai:{model}"
        self.version = version
        self.dimension = dimension
        self.model = model
        self.batch_size = batch_size
        self.normalise = normalise
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout_s,
            transport=transport,
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(await self._embed_batch(list(texts[start : start + self.batch_size])))
        return vectors

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        body = {"model": self.model, "input": texts, "encoding_format": "base64"}
        try:
            response = await self._client.post("embeddings", json=body)
        except httpx.TimeoutException:
            raise UpstreamTimeout(
                f"embedding server {self._client.base_url} did not answer in time",
                deadline_s=self._client.timeout.read,
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"embedding server {self._client.base_url} is unreachable: {exc}"
            ) from None
        if response.status_code != 200:
            raise UpstreamError(
                f"embedding server answered {response.status_code}: {response.text[:200]}",
                upstream_status=response.status_code,
            )
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        matrix = np.array([decode(d["embedding"]) for d in data], dtype=np.float32)
        if matrix.shape != (len(texts), self.dimension):
            raise UpstreamError(
                f"embedding server returned shape {matrix.shape}, expected "
                f"({len(texts)}, {self.dimension}); check retrieval.embedder.dimension"
            )
        if self.normalise:
            matrix /= np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12, None)
        result: list[list[float]] = matrix.tolist()
        return result

    async def aclose(self) -> None:
        await self._client.aclose()


def decode(embedding: Any) -> Any:
    """Servers answer floats, or base64 little-endian float32 when asked (as the SDK does)."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return embedding


def api_key_from(options: Mapping[str, Any]) -> str | None:
    """``api_key_env`` names an environment variable, so the key stays out of the TOML file."""
    env = options.get("api_key_env")
    if isinstance(env, str) and env:
        return os.environ.get(env)
    key = options.get("api_key")
    return key if isinstance(key, str) else None
