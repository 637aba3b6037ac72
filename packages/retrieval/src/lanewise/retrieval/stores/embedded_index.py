"""One tenant's in-memory ANN index: a faiss HNSW graph over append-only slots.

faiss HNSW cannot delete in place, so a replaced or deleted row only clears
its ``live`` bit; every search passes ``live`` (and the filter's mask) to faiss
as an ``IDSelectorBitmap`` allow-list, which HNSW and flat search honour
natively. When dead slots pile up, the owner rebuilds the tenant from SQLite.

Search plan: if the allow-list is small (``exact_limit`` rows or fewer), score
exactly those rows (recall 1.0, and cheaper than walking a graph in which
almost every node is filtered out); otherwise walk HNSW with ``efSearch``
widened by the filter's selectivity, and fall back to exact if the graph walk
found fewer than ``k`` allowed rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import faiss as _faiss
import numpy as np
import numpy.typing as npt
from lanewise.retrieval.filters import Node
from lanewise.retrieval.stores.embedded_columns import Columns, Mask, _Grow

# faiss's bundled stubs miss SearchParameters(sel=...) and SearchParametersHNSW.
faiss: Any = _faiss

Precision = Literal["f32", "f16", "int8"]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class IndexParams:
    dimension: int
    precision: Precision = "f32"
    m: int = 16
    ef_construction: int = 100
    ef_search: int = 64
    exact_limit: int = 20_000
    max_ef: int = 1024


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
        self.columns = Columns()
        self.size = 0

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
    ) -> None:
        """Append rows (vectors already unit length); an existing id's old slot dies."""
        self.remove(ids)
        start, n = self.size, len(ids)
        self.index.add(vectors)
        rows = self.rowids.view(start + n)
        rows[start:] = rowids
        live = self.live.view(start + n)
        live[start:] = True
        for offset, rid in enumerate(ids):
            self.slot_of[rid] = start + offset
        self.columns.append(metadata)
        self.size = start + n

    def remove(self, ids: Sequence[str]) -> int:
        removed = 0
        for rid in ids:
            slot = self.slot_of.pop(rid, None)
            if slot is not None:
                self.live.data[slot] = False
                removed += 1
        return removed

    def matching(self, node: Node | None) -> Mask:
        """Allow-list of live slots matching the filter."""
        return self.live.view(self.size) & self.columns.mask(node)

    def ids_matching(self, node: Node | None) -> list[int]:
        return [int(r) for r in self.rowids.view(self.size)[self.matching(node)]]

    def search(self, query: F32, k: int, node: Node | None) -> list[tuple[int, float]]:
        """Top-k (sqlite rowid, inner product) among live slots matching ``node``."""
        allowed = self.matching(node)
        count = int(allowed.sum())
        if count == 0:
            return []
        k = min(k, count)
        bitmap = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bitmap))
        q = query.reshape(1, -1)
        if count > self.params.exact_limit:
            fraction = count / self.size
            ef = min(self.params.max_ef, max(k, int(self.params.ef_search / fraction)))
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
            scores, slots = self.index.search(q, k, params=params)
            found = self._pairs(scores[0], slots[0])
            if len(found) == k:
                return found
        params_exact = faiss.SearchParameters(sel=selector)
        scores, slots = self.index.storage.search(q, k, params=params_exact)
        return self._pairs(scores[0], slots[0])

    def _pairs(self, scores: F32, slots: npt.NDArray[np.int64]) -> list[tuple[int, float]]:
        rowids = self.rowids.data
        return [(int(rowids[s]), float(v)) for v, s in zip(scores, slots, strict=True) if s >= 0]
