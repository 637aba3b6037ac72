"""One tenant's in-memory ANN index: a faiss HNSW graph over append-only slots.

faiss HNSW cannot delete in place, so a replaced or deleted row only clears
its ``live`` bit; every search passes ``live`` (and the filter's mask) to faiss
as an ``IDSelectorBitmap`` allow-list, which HNSW and flat search honour
natively. When dead slots pile up, the owner rebuilds the tenant from SQLite.

Search plan: if the allow-list is small (``exact_limit`` rows or fewer, or at
most ``exact_fraction`` of the tenant), score exactly those rows (recall 1.0,
and cheaper than walking a graph in which almost every node is filtered out);
otherwise walk HNSW with the allow-list and ``efSearch`` widened as the filter
gets more selective, and fall back to exact if the walk found fewer than ``k``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import faiss as _faiss
import numpy as np
import numpy.typing as npt
from lanewise.retrieval.filters import Node
from lanewise.retrieval.fusion import fused_order
from lanewise.retrieval.stores.embedded_columns import Columns, Mask, _Grow
from lanewise.retrieval.stores.embedded_lexical import LexicalIndex

# faiss's bundled stubs miss SearchParameters(sel=...) and SearchParametersHNSW.
faiss: Any = _faiss

Precision = Literal["f32", "f16", "int8"]
ALLOW_LIST_CACHE = 16
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class IndexParams:
    dimension: int
    precision: Precision = "f32"
    m: int = 16
    ef_construction: int = 100
    ef_search: int = 64
    exact_limit: int = 4_000
    # Filters passing at most this share of a tenant are scored exactly: HNSW needs
    # ef ~ 1000 for recall 0.97 at 1 % (bench/results/retrieval_index.json, forced plans).
    exact_fraction: float = 0.02


def new_faiss_index(params: IndexParams, training: F32 | None = None) -> Any:
    d = params.dimension
    if params.precision == "f32":
        index = faiss.IndexHNSWFlat(d, params.m, faiss.METRIC_INNER_PRODUCT)
    else:
        qtype = (
            faiss.ScalarQuantizer.QT_fp16
            if params.precision == "f16"
            else faiss.ScalarQuantizer.QT_8bit
        )
        index = faiss.IndexHNSWSQ(d, qtype, params.m, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            # int8 learns a per-dimension range; without data, assume unit-norm components.
            sample = training if training is not None and len(training) >= 256 else None
            if sample is None:
                sample = np.vstack([np.full(d, -1.0), np.full(d, 1.0)]).astype(np.float32)
            index.train(sample)
    index.hnsw.efConstruction = params.ef_construction
    return index


class TenantIndex:
    def __init__(self, params: IndexParams, training: F32 | None = None) -> None:
        self.params = params
        self.index = new_faiss_index(params, training)
        self.rowids = _Grow(np.int64, -1)
        self.live = _Grow(np.bool_, False)
        self.slot_of: dict[str, int] = {}
        self.ids: list[str] = []
        """Each slot's id ("" for a slot a snapshot restored dead): hybrid fusion breaks
        ties by id without reading rows."""
        self.columns = Columns()
        self.lexical = LexicalIndex()
        self.size = 0
        # Recent filters' allow-lists: a mask over 1M slots costs ~1 ms to evaluate and
        # pack, and most traffic repeats a few filters. Any write clears it.
        self._allowed: OrderedDict[str, tuple[Mask, int, npt.NDArray[np.uint8]]] = OrderedDict()

    @property
    def live_count(self) -> int:
        return len(self.slot_of)

    @property
    def dead_count(self) -> int:
        return self.size - len(self.slot_of)

    def add(
        self,
        ids: Sequence[str],
        vectors: F32,
        rowids: Sequence[int],
        metadata: Sequence[Mapping[str, Any]],
        tokens: Sequence[Sequence[str]],
    ) -> None:
        """Append rows (vectors already unit length, texts tokenized); an existing id's old
        slot dies."""
        self.remove(ids)
        self._allowed.clear()
        start, n = self.size, len(ids)
        self.index.add(vectors)
        rows = self.rowids.view(start + n)
        rows[start:] = rowids
        live = self.live.view(start + n)
        live[start:] = True
        for offset, rid in enumerate(ids):
            self.slot_of[rid] = start + offset
        self.ids.extend(ids)
        self.columns.append(metadata)
        self.lexical.append(tokens)
        self.size = start + n

    def remove(self, ids: Sequence[str]) -> int:
        self._allowed.clear()
        removed = 0
        for rid in ids:
            slot = self.slot_of.pop(rid, None)
            if slot is not None:
                self.live.data[slot] = False
                self.lexical.kill(slot)
                removed += 1
        return removed

    def matching(self, node: Node | None) -> Mask:
        """Allow-list of live slots matching the filter."""
        return self.live.view(self.size) & self.columns.mask(node)

    def allow_list(self, node: Node | None) -> tuple[Mask, int, npt.NDArray[np.uint8]]:
        """(mask, count, faiss bitmap) of live slots matching ``node``, cached per filter."""
        # repr, not the node: dataclass equality says Eq("f", True) == Eq("f", 1).
        key = repr(node)
        hit = self._allowed.get(key)
        if hit is not None:
            self._allowed.move_to_end(key)
            return hit
        allowed = self.matching(node)
        entry = (allowed, int(allowed.sum()), np.packbits(allowed, bitorder="little"))
        self._allowed[key] = entry
        if len(self._allowed) > ALLOW_LIST_CACHE:
            self._allowed.popitem(last=False)
        return entry

    def search(self, query: F32, k: int, node: Node | None) -> list[tuple[int, float]]:
        """Top-k (sqlite rowid, inner product) among live slots matching ``node``."""
        return self._rowids(self._search(query, k, node))

    def search_lexical(
        self, terms: Sequence[str], k: int, node: Node | None
    ) -> list[tuple[int, float]]:
        """Top-k (sqlite rowid, BM25) among live slots matching ``node``."""
        return self._rowids(self._search_lexical(terms, k, node))

    def search_hybrid(
        self, query: F32, terms: Sequence[str], depth: int, node: Node | None, **options: Any
    ) -> tuple[list[tuple[int, float, int | None, int | None]], int, int]:
        """Both searches at ``depth``, fused (``options``: :func:`fused_order`'s k, fusion,
        alpha, rrf_k): ([(sqlite rowid, score, dense rank, lexical rank)], dense and
        lexical candidate counts)."""
        dense = self._search(query, depth, node)
        lexical = self._search_lexical(terms, depth, node)
        order = fused_order(dense, lexical, name=self.ids.__getitem__, **options)
        rowids = self.rowids.data
        fused = [(int(rowids[slot]), score, dr, lr) for slot, score, dr, lr in order]
        return fused, len(dense), len(lexical)

    def _rowids(self, found: list[tuple[int, float]]) -> list[tuple[int, float]]:
        rowids = self.rowids.data
        return [(int(rowids[slot]), score) for slot, score in found]

    def _search(self, query: F32, k: int, node: Node | None) -> list[tuple[int, float]]:
        """Top-k (slot, inner product) among live slots matching ``node``."""
        q = query.reshape(1, -1)
        if node is None and self.dead_count == 0:
            # Nothing to exclude: no allow-list to build or check.
            if self.size == 0:
                return []
            k = min(k, self.size)
            if self.size > self.params.exact_limit:
                hnsw = faiss.SearchParametersHNSW(efSearch=max(k, self.params.ef_search))
                scores, slots = self.index.search(q, k, params=hnsw)
            else:
                scores, slots = self.index.storage.search(q, k)
            found = self._pairs(scores[0], slots[0])
            if len(found) == k:
                return found
        allowed, count, bitmap = self.allow_list(node)
        if count == 0:
            return []
        k = min(k, count)
        if count > self.params.exact_limit and count > self.params.exact_fraction * self.size:
            selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bitmap))
            # faiss counts only allowed nodes towards efSearch, but recall still drops as
            # the allow-list thins the graph (bench, 200k rows at 10 %: ef 127 gives 0.94,
            # ef 255 gives 0.98): widen ef by selectivity^-0.5 (3.2x at 10 %), at most 16x.
            widen = min(16.0, (self.size / count) ** 0.5)
            ef = max(k, int(self.params.ef_search * widen))
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
            scores, slots = self.index.search(q, k, params=params)
            found = self._pairs(scores[0], slots[0])
            if len(found) == k:
                return found
        return self._exact(query, k, allowed)

    def _search_lexical(
        self, terms: Sequence[str], k: int, node: Node | None
    ) -> list[tuple[int, float]]:
        allowed, count, _ = self.allow_list(node)
        if count == 0 or not terms:
            return []
        return self.lexical.search(
            terms, k, self.live.view(self.size), allowed, self.live_count, count
        )

    def _exact(self, query: F32, k: int, allowed: Mask) -> list[tuple[int, float]]:
        # Decoding just the allowed rows beats a selector scan over every slot (bench:
        # 0.6 vs 1.2 ms for 2k of 200k rows), and works for every storage precision.
        slots = np.flatnonzero(allowed)
        scores = self.index.storage.reconstruct_batch(slots) @ query
        top = np.argpartition(-scores, k - 1)[:k] if k < len(slots) else np.arange(len(slots))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(slots[i]), float(scores[i])) for i in top]

    @staticmethod
    def _pairs(scores: F32, slots: npt.NDArray[np.int64]) -> list[tuple[int, float]]:
        return [(int(s), float(v)) for v, s in zip(scores, slots, strict=True) if s >= 0]
