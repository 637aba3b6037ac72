"""Query-embedding and result caches: in process (bounded LRU + TTL) or Redis.

Two caches over one byte store, with keys that make invalidation implicit:

- embeddings: ``(embedder id, embedder version, normalised text)``; valid
  until the embedder's weights change, whatever happens to the index.
- results: additionally ``(tenant, canonical filter, k, reranker, index
  version)``; an upsert or delete bumps the tenant's index version, so the
  next query misses and old entries age out, without any scan or purge.

A cache must never fail a request: Redis errors count as misses (and in
``errors``), and the request goes on to the embedder and the store.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import numpy as np
from lanewise.core.types import Hit

NAMESPACE = "lanewise:retrieval:"


def normalise_text(text: str) -> str:
    """NFKC and collapsed whitespace: texts that embed identically share a key.

    Case is kept: whether it matters is the embedder's business, not the cache's.
    """
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        h.update(part.encode())
        h.update(b"\x1f")
    return h.hexdigest()


def embedding_key(embedder_id: str, embedder_version: str, text: str) -> str:
    return "emb:" + _digest(embedder_id, embedder_version, normalise_text(text))


def result_key(
    *,
    embedder_id: str,
    embedder_version: str,
    text: str,
    tenant: str,
    filter: Mapping[str, Any] | None,
    k: int,
    index_version: int,
    reranker: str = "",
    search: str = "",
) -> str:
    """``search`` names how the store was searched (mode, fusion, alpha): other hits, other key."""
    canonical = json.dumps(filter or {}, sort_keys=True, separators=(",", ":"))
    return "res:" + _digest(
        embedder_id,
        embedder_version,
        normalise_text(text),
        tenant,
        canonical,
        str(k),
        str(index_version),
        reranker,
        search,
    )


class ByteStore(Protocol):
    """Where cache entries live: bytes under string keys, each with a TTL."""

    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """Bounded LRU with per-entry expiry; thread-safe (embedders run in threads)."""

    name = "memory"

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    async def get(self, key: str) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires <= now:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    async def aclose(self) -> None:
        with self._lock:
            self._entries.clear()


class RedisStore:
    """Redis ``GET`` / ``SET PX``; Redis' own maxmemory policy bounds it."""

    name = "redis"

    def __init__(self, url: str, *, namespace: str = NAMESPACE, timeout_s: float = 0.25) -> None:
        import redis.asyncio as aioredis

        self.namespace = namespace
        self._client: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    async def get(self, key: str) -> bytes | None:
        value = await self._client.get(self.namespace + key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._client.set(self.namespace + key, value, px=max(1, int(ttl_s * 1000)))

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class RetrievalCache:
    """Typed get/put for embeddings and results over one :class:`ByteStore`."""

    def __init__(self, store: ByteStore, *, ttl_s: float = 300.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.stats = {"embedding": CacheStats(), "result": CacheStats()}
        self._hits = msgspec.msgpack.Decoder(list[Hit])
        self._encoder = msgspec.msgpack.Encoder()

    async def _get(self, kind: str, key: str) -> bytes | None:
        stats = self.stats[kind]
        try:
            value = await self.store.get(key)
        except Exception:  # the cache is an optimisation: an outage is a miss
            stats.errors += 1
            value = None
        if value is None:
            stats.misses += 1
        else:
            stats.hits += 1
        return value

    async def _set(self, kind: str, key: str, value: bytes) -> None:
        try:
            await self.store.set(key, value, self.ttl_s)
        except Exception:
            self.stats[kind].errors += 1

    async def get_embedding(self, key: str) -> list[float] | None:
        raw = await self._get("embedding", key)
        if raw is None:
            return None
        vector: list[float] = np.frombuffer(raw, dtype="<f4").tolist()
        return vector

    async def put_embedding(self, key: str, vector: Sequence[float]) -> None:
        await self._set("embedding", key, np.asarray(vector, dtype="<f4").tobytes())

    async def get_hits(self, key: str) -> list[Hit] | None:
        raw = await self._get("result", key)
        if raw is None:
            return None
        try:
            hits: list[Hit] = self._hits.decode(raw)
        except msgspec.DecodeError:  # written by an incompatible version: a miss
            self.stats["result"].hits -= 1
            self.stats["result"].misses += 1
            return None
        return hits

    async def put_hits(self, key: str, hits: Sequence[Hit]) -> None:
        await self._set("result", key, self._encoder.encode(list(hits)))

    def counters(self) -> dict[str, int]:
        """Flat counters for events and ``/metrics``: ``lanewise.cache.<kind>.<what>``."""
        out = {}
        for kind, stats in self.stats.items():
            out[f"lanewise.cache.{kind}.hits"] = stats.hits
            out[f"lanewise.cache.{kind}.misses"] = stats.misses
            out[f"lanewise.cache.{kind}.errors"] = stats.errors
        return out

    async def aclose(self) -> None:
        await self.store.aclose()


def build_cache(*, redis_url: str | None, ttl_s: float, max_entries: int) -> RetrievalCache | None:
    """Redis when ``redis_url`` is set, else in process; None when ``ttl_s`` is 0."""
    if ttl_s <= 0:
        return None
    store: ByteStore = RedisStore(redis_url) if redis_url else MemoryStore(max_entries)
    return RetrievalCache(store, ttl_s=ttl_s)
