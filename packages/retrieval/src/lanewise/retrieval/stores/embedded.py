"""The embedded default vector store: SQLite (WAL) as the source of truth, faiss HNSW as a cache.

Why this shape (docs/decisions/0001-embedded-vector-store.md): no ANN library
on the shortlist offers a write-ahead log, so an index file alone cannot
survive ``kill -9`` mid-write without losing or half-applying a batch. Every
upsert and delete is therefore one SQLite transaction (WAL, ``synchronous=FULL``)
that commits before the call returns: an acknowledged write is on disk, and an
interrupted one is rolled back on the next open. The per-tenant faiss index
(see :mod:`.embedded_index`) is rebuilt from SQLite when a tenant is first
used, or loaded from a snapshot written at close if that snapshot is exactly
as new as the tenant's rows.

Tenants are isolated by construction: each has its own index and its rows are
keyed ``(tenant, id)``; no code path searches more than one tenant's index.

One process owns a store file (an exclusive ``flock`` on ``<path>.lock``).
Calls run in worker threads; writes and index walks are serialised by one lock
(faiss releases the GIL while it searches), and searches read their hits on
per-thread read-only connections outside it.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np
from lanewise.core.errors import ConfigError, InvalidRequest
from lanewise.core.protocols import Filter
from lanewise.core.types import Hit
from lanewise.retrieval.filters import Node, parse_filter
from lanewise.retrieval.fusion import Fused, Fusion
from lanewise.retrieval.lexical import query_terms, tokenize
from lanewise.retrieval.stores.batch import (
    Batch,
    check_k,
    check_tenant,
    unit_vectors,
    validate_batch,
)
from lanewise.retrieval.stores.embedded_index import F32, IndexParams, TenantIndex

# faiss's bundled stubs miss SearchParameters(sel=...) and SearchParametersHNSW.
faiss: Any = _faiss

FORMAT = "1"
SNAPSHOT_MIN_ROWS = 5_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (tenant TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    vector BLOB NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    UNIQUE (tenant, id)
);
"""


class EmbeddedStore:
    """A :class:`~lanewise.core.protocols.VectorStore` in one SQLite file plus faiss."""

    single_process = True  # the gateway refuses --workers > 1 with this store (one owner)

    def __init__(self, path: str | Path, params: IndexParams) -> None:
        self.path = Path(path)
        self.params = params
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lockfile = open(f"{self.path}.lock", "w")  # noqa: SIM115 (held for the store's life)
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise ConfigError(
                f"vector store {self.path} is open in another process; the embedded store has "
                "one owner process (run one gateway worker, or use kind = pgvector/weaviate)"
            ) from None
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._check_format()
        except BaseException:
            self._db.close()
            self._lockfile.close()
            raise
        self._lock = threading.Lock()
        self._tenants: dict[str, TenantIndex] = {}
        self._readers = threading.local()
        self._reader_list: list[sqlite3.Connection] = []
        self._closed = False

    def _check_format(self) -> None:
        stored = dict(self._db.execute("SELECT key, value FROM store_meta").fetchall())
        want = {"format": FORMAT, "dimension": str(self.params.dimension)}
        if not stored:
            with self._tx():
                self._db.executemany("INSERT INTO store_meta VALUES (?, ?)", want.items())
        elif stored.get("dimension") != want["dimension"]:
            raise ConfigError(
                f"retrieval.vector_store.dimension is {self.params.dimension} but "
                f"{self.path} holds {stored.get('dimension')}-d vectors"
            )

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    # -- the VectorStore protocol -----------------------------------------------------

    async def upsert(
        self,
        *,
        tenant: str,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]],
    ) -> int:
        check_tenant(tenant)
        batch = validate_batch(self.params.dimension, ids, vectors, texts, metadata)
        if batch is None:
            return 0
        return await asyncio.to_thread(self._locked, self._upsert, tenant, batch)

    async def delete(
        self, *, tenant: str, ids: Sequence[str] | None = None, filter: Filter | None = None
    ) -> int:
        check_tenant(tenant)
        if ids is None and filter is None:
            raise InvalidRequest("delete needs ids, a filter, or both")
        node = parse_filter(filter)
        return await asyncio.to_thread(
            self._locked, self._delete, tenant, None if ids is None else list(ids), node
        )

    async def search(
        self, *, tenant: str, vector: Sequence[float], k: int, filter: Filter | None = None
    ) -> list[Hit]:
        check_tenant(tenant)
        check_k(k)
        query = unit_vectors(self.params.dimension, [vector], what="query vector")[0]
        node = parse_filter(filter)
        return await asyncio.to_thread(self._search, tenant, query, k, node)

    async def search_lexical(
        self, *, tenant: str, query: str, k: int, filter: Filter | None = None
    ) -> list[Hit]:
        """BM25 over the tenant's texts (:mod:`lanewise.retrieval.lexical`), best first."""
        check_tenant(tenant)
        check_k(k)
        node = parse_filter(filter)
        terms = query_terms(query)
        return await asyncio.to_thread(self._search_lexical, tenant, terms, k, node)

    async def search_hybrid(
        self,
        *,
        tenant: str,
        vector: Sequence[float],
        query: str,
        k: int,
        depth: int,
        filter: Filter | None = None,
        fusion: Fusion = "weighted",
        alpha: float = 0.7,
        rrf_k: int = 60,
    ) -> Fused:
        """Both searches at ``depth`` and their fusion (:mod:`lanewise.retrieval.fusion`) in
        one worker thread; only the ``k`` winners' rows are read."""
        check_tenant(tenant)
        check_k(k)
        check_k(depth)
        vec = unit_vectors(self.params.dimension, [vector], what="query vector")[0]
        node = parse_filter(filter)
        terms = query_terms(query)
        options = {"k": k, "fusion": fusion, "alpha": alpha, "rrf_k": rrf_k}
        return await asyncio.to_thread(
            self._search_hybrid, tenant, vec, terms, depth, node, options
        )

    async def count(self, *, tenant: str, filter: Filter | None = None) -> int:
        check_tenant(tenant)
        node = parse_filter(filter)
        return await asyncio.to_thread(
            self._locked, lambda: self._tenant(tenant).allow_list(node)[1]
        )

    async def index_version(self, *, tenant: str) -> int:
        check_tenant(tenant)
        return await asyncio.to_thread(self._locked, self._version, tenant)

    async def snapshot(self) -> None:
        """Write the loaded tenants' indexes to disk so the next open skips rebuilding them."""
        await asyncio.to_thread(self._locked, self._snapshot_all)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._locked, self._close)

    # -- synchronous internals (run under self._lock in a worker thread) -----------------

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            if self._closed:
                raise RuntimeError("vector store is closed")
            return fn(*args)

    def _reader(self) -> sqlite3.Connection:
        reader: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if reader is None:
            reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            reader.execute("PRAGMA query_only=ON")
            self._readers.db = reader
            with self._lock:
                if self._closed:
                    reader.close()
                    raise RuntimeError("vector store is closed")
                self._reader_list.append(reader)
        return reader

    def _version(self, tenant: str) -> int:
        row = self._db.execute("SELECT version FROM tenants WHERE tenant = ?", (tenant,)).fetchone()
        return int(row[0]) if row else 0

    def _tenant(self, tenant: str) -> TenantIndex:
        index = self._tenants.get(tenant)
        if index is None:
            index = self._load_snapshot(tenant) or self._load_rows(tenant)
            self._tenants[tenant] = index
        return index

    def _load_rows(self, tenant: str) -> TenantIndex:
        rows = self._db.execute(
            "SELECT rowid, id, vector, metadata, text FROM rows WHERE tenant = ? ORDER BY rowid",
            (tenant,),
        ).fetchall()
        vectors = _blobs_to_matrix([r[2] for r in rows], self.params.dimension)
        index = TenantIndex(self.params, training=vectors)
        if rows:
            index.add(
                [r[1] for r in rows],
                vectors,
                [r[0] for r in rows],
                [json.loads(r[3]) for r in rows],
                [tokenize(r[4]) for r in rows],
            )
        return index

    def _upsert(self, tenant: str, batch: Batch) -> int:
        ids, vectors, parsed = batch.ids, batch.vectors, batch.metadata
        tokens = [tokenize(text) for text in batch.texts]
        index = self._tenant(tenant)
        rowids: list[int] = []
        with self._tx():
            self._db.executemany(
                "DELETE FROM rows WHERE tenant = ? AND id = ?", [(tenant, i) for i in ids]
            )
            for rid, vec, text, meta in zip(
                ids, vectors, batch.texts, batch.metadata_json, strict=True
            ):
                cur = self._db.execute(
                    "INSERT INTO rows (tenant, id, vector, text, metadata) VALUES (?, ?, ?, ?, ?)",
                    (tenant, rid, vec.tobytes(), text, meta),
                )
                rowids.append(int(cur.lastrowid or 0))
            self._bump(tenant)
        self._apply(tenant, lambda: index.add(ids, vectors, rowids, parsed, tokens))
        return len(ids)

    def _delete(self, tenant: str, ids: list[str] | None, node: Node | None) -> int:
        index = self._tenant(tenant)
        if node is None:
            wanted = [i for i in dict.fromkeys(ids or []) if i in index.slot_of]
        else:
            allowed = index.matching(node)
            matching = {i for i, slot in index.slot_of.items() if allowed[slot]}
            wanted = sorted(matching if ids is None else matching.intersection(ids))
        if not wanted:
            return 0
        with self._tx():
            self._db.executemany(
                "DELETE FROM rows WHERE tenant = ? AND id = ?", [(tenant, i) for i in wanted]
            )
            self._bump(tenant)
        self._apply(tenant, lambda: index.remove(wanted))
        return len(wanted)

    def _bump(self, tenant: str) -> None:
        self._db.execute(
            "INSERT INTO tenants VALUES (?, 1) "
            "ON CONFLICT (tenant) DO UPDATE SET version = version + 1",
            (tenant,),
        )

    def _apply(self, tenant: str, change: Any) -> None:
        """Mirror a committed write into the cache; if that fails, drop the cache instead."""
        try:
            change()
        except BaseException:
            self._tenants.pop(tenant, None)
            raise
        index = self._tenants[tenant]
        if index.dead_count > max(1024, index.live_count):
            # HNSW cannot delete: once dead slots outnumber live ones, rebuild from SQLite.
            self._tenants[tenant] = self._load_rows(tenant)

    def _search(self, tenant: str, query: F32, k: int, node: Node | None) -> list[Hit]:
        # Only the index walk holds the store lock; the hits are read on this thread's
        # own connection, so searches overlap on SQLite. A rowid the index returned is
        # committed (writes commit before they touch the index); if a delete removed it
        # since, it is simply left out.
        found = self._locked(lambda: self._tenant(tenant).search(query, k, node))
        return self._read_hits(found)

    def _search_lexical(
        self, tenant: str, terms: list[str], k: int, node: Node | None
    ) -> list[Hit]:
        found = self._locked(lambda: self._tenant(tenant).search_lexical(terms, k, node))
        return self._read_hits(found)

    def _search_hybrid(
        self,
        tenant: str,
        query: F32,
        terms: list[str],
        depth: int,
        node: Node | None,
        options: dict[str, Any],
    ) -> Fused:
        fused, dense, lexical = self._locked(
            lambda: self._tenant(tenant).search_hybrid(query, terms, depth, node, **options)
        )
        ranks = {rowid: (dr, lr) for rowid, _, dr, lr in fused}
        hits = self._read_hits([(rowid, score) for rowid, score, _, _ in fused], ranks)
        return Fused(hits, dense, lexical)

    def _rows(self, columns: str, rowids: Iterable[int]) -> list[Any]:
        wanted = list(rowids)
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        sql = f"SELECT rowid, {columns} FROM rows WHERE rowid IN ({marks})"  # noqa: S608
        return self._reader().execute(sql, wanted).fetchall()

    def _read_hits(
        self,
        found: list[tuple[int, float]],
        ranks: Mapping[int, tuple[int | None, int | None]] | None = None,
    ) -> list[Hit]:
        """The rows of (rowid, score) pairs as hits, in order; ``ranks``: each rowid's
        (dense, lexical) rank when the hits are a fusion's."""
        rows = {r[0]: r[1:] for r in self._rows("id, text, metadata", (r for r, _ in found))}
        hits = []
        for rowid, score in found:
            if rowid not in rows:
                continue
            rid, text, meta_json = rows[rowid]
            meta = json.loads(meta_json)
            source = meta.get("source")
            dense_rank, lexical_rank = ranks[rowid] if ranks is not None else (None, None)
            hits.append(
                Hit(
                    id=rid,
                    score=score,
                    text=text,
                    source=source if isinstance(source, str) else "",
                    metadata=meta,
                    dense_rank=dense_rank,
                    lexical_rank=lexical_rank,
                )
            )
        return hits

    # -- snapshots: a faster reopen, never the source of truth ---------------------------

    def _snapshot_paths(self, tenant: str) -> tuple[Path, Path]:
        digest = hashlib.sha256(tenant.encode()).hexdigest()[:24]
        base = self.path.parent / f"{self.path.name}.snapshots"
        return base / f"{digest}.faiss", base / f"{digest}.npz"

    def _write_snapshot(self, tenant: str, index: TenantIndex) -> None:
        faiss_path, npz_path = self._snapshot_paths(tenant)
        faiss_path.parent.mkdir(exist_ok=True)
        version = self._version(tenant)
        tmp_index, tmp_npz = faiss_path.with_suffix(".tmp"), npz_path.with_suffix(".tmp.npz")
        faiss.write_index(index.index, str(tmp_index))
        np.savez(
            tmp_npz,
            rowids=index.rowids.view(index.size),
            live=index.live.view(index.size),
            version=np.int64(version),
            tenant=np.str_(tenant),
            params=np.str_(repr(self.params)),
        )
        for tmp in (tmp_index, tmp_npz):
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        # The npz names the version it matches; it is renamed last, so a crash in
        # between leaves an old npz that no longer matches and is ignored.
        os.replace(tmp_index, faiss_path)
        os.replace(tmp_npz, npz_path)

    def _load_snapshot(self, tenant: str) -> TenantIndex | None:
        faiss_path, npz_path = self._snapshot_paths(tenant)
        if not (faiss_path.exists() and npz_path.exists()):
            return None
        try:
            with np.load(npz_path) as snap:
                if (
                    str(snap["tenant"]) != tenant
                    or int(snap["version"]) != self._version(tenant)
                    or str(snap["params"]) != repr(self.params)
                ):
                    return None
                rowids, live = snap["rowids"], snap["live"]
            faiss_index = faiss.read_index(str(faiss_path))
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        if faiss_index.ntotal != len(rowids):
            return None
        rows = self._db.execute(
            "SELECT rowid, id, metadata, text FROM rows WHERE tenant = ?", (tenant,)
        ).fetchall()
        slot_of_rowid = {int(r): s for s, r in enumerate(rowids) if live[s]}
        if len(slot_of_rowid) != len(rows) or any(r[0] not in slot_of_rowid for r in rows):
            return None
        index = TenantIndex(self.params)
        index.index = faiss_index
        n = len(rowids)
        index.rowids.view(n)[:] = rowids
        index.live.view(n)[:] = live
        index.size = n
        index.ids = [""] * n
        metas: list[dict[str, Any]] = [{} for _ in range(n)]
        tokens: list[list[str]] = [[] for _ in range(n)]
        for rowid, rid, meta, text in rows:
            slot = slot_of_rowid[rowid]
            index.slot_of[rid] = slot
            index.ids[slot] = rid
            metas[slot] = json.loads(meta)
            tokens[slot] = tokenize(text)
        index.columns.append(metas)
        index.lexical.append(tokens)
        return index

    def _snapshot_all(self, min_rows: int = 0) -> None:
        for tenant, index in self._tenants.items():
            if index.live_count >= min_rows:
                self._write_snapshot(tenant, index)

    def _close(self) -> None:
        self._snapshot_all(SNAPSHOT_MIN_ROWS)
        for reader in self._reader_list:
            reader.close()
        self._db.close()
        self._lockfile.close()
        self._closed = True


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _blobs_to_matrix(blobs: Sequence[bytes], dimension: int) -> F32:
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    matrix: F32 = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dimension)
    return matrix
