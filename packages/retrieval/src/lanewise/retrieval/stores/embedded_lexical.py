"""One tenant's BM25 index: numpy postings over the same slots as its faiss index.

Like the faiss graph, this is a cache of the tenant's SQLite rows, rebuilt from
them when the tenant is loaded, so after a crash both indexes come from the
same committed rows and cannot disagree. Sharing the slots means the filter's
allow-list and the ``live`` bits that serve vector search serve BM25 unchanged.

Why not SQLite FTS5 (decision in docs/retrieval.md): FTS5 keeps its statistics
per table, so one tenant's documents would change another's scores unless
every tenant got its own virtual table, and its ranked MATCH cannot take the
filter's allow-list, so a selective filter would scan ranked matches until
``k`` of them pass. Postings in numpy score the tenant's own statistics and
apply the allow-list as one vector mask.

Postings arrive per upsert batch as small arrays and are merged into one
array per term the first time a query needs that term.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from lanewise.retrieval.lexical import K1, B, idf
from lanewise.retrieval.stores.embedded_columns import Mask, _Grow

I32 = npt.NDArray[np.int32]


class LexicalIndex:
    def __init__(self) -> None:
        self.lengths = _Grow(np.int32, 0)
        self.size = 0
        self.live_length = 0
        self.vocabulary: dict[str, int] = {}
        self._parts: list[list[tuple[I32, I32]]] = []

    def append(self, documents: Sequence[Sequence[str]]) -> None:
        """Tokens of slots ``size .. size + len(documents) - 1``, in slot order."""
        terms: list[int] = []
        slots: list[int] = []
        tfs: list[int] = []
        lengths = self.lengths.view(self.size + len(documents))
        for offset, tokens in enumerate(documents):
            slot = self.size + offset
            lengths[slot] = len(tokens)
            self.live_length += len(tokens)
            for term, tf in Counter(tokens).items():
                tid = self.vocabulary.get(term)
                if tid is None:
                    tid = self.vocabulary[term] = len(self._parts)
                    self._parts.append([])
                terms.append(tid)
                slots.append(slot)
                tfs.append(tf)
        self.size += len(documents)
        if not terms:
            return
        tid_arr = np.asarray(terms, dtype=np.int64)
        order = np.argsort(tid_arr, kind="stable")
        tid_arr = tid_arr[order]
        slot_arr = np.asarray(slots, dtype=np.int32)[order]
        tf_arr = np.asarray(tfs, dtype=np.int32)[order]
        bounds = np.flatnonzero(np.diff(tid_arr)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(tid_arr)]))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            self._parts[int(tid_arr[start])].append((slot_arr[start:end], tf_arr[start:end]))

    def kill(self, slot: int) -> None:
        """A slot died (deleted or replaced): its length leaves the average."""
        self.live_length -= int(self.lengths.data[slot])

    def postings(self, term: str) -> tuple[I32, I32] | None:
        tid = self.vocabulary.get(term)
        if tid is None:
            return None
        parts = self._parts[tid]
        if len(parts) > 1:
            parts[:] = [
                (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            ]
        return parts[0]

    def search(
        self, terms: Sequence[str], k: int, live: Mask, allowed: Mask, live_count: int
    ) -> list[tuple[int, float]]:
        """Top-k (slot, BM25) among ``allowed`` slots with at least one query term."""
        if live_count == 0:
            return []
        avg = self.live_length / live_count
        scores = np.zeros(self.size, dtype=np.float64)
        touched: list[Any] = []
        for term in terms:
            found = self.postings(term)
            if found is None:
                continue
            slots, tfs = found
            df = int(np.count_nonzero(live[slots]))
            if df == 0:
                continue
            keep = allowed[slots]
            slots, tf = slots[keep], tfs[keep].astype(np.float64)
            if len(slots) == 0:
                continue
            lengths = self.lengths.data[slots]
            norm = K1 * (1.0 - B + B * lengths / avg) if avg > 0 else K1
            scores[slots] += idf(live_count, df) * tf * (K1 + 1.0) / (tf + norm)
            touched.append(slots)
        if not touched:
            return []
        candidates = np.unique(np.concatenate(touched))
        values = scores[candidates]
        if k < len(candidates):
            top = np.argpartition(-values, k - 1)[:k]
        else:
            top = np.arange(len(candidates))
        top = top[np.argsort(-values[top], kind="stable")]
        return [(int(candidates[i]), float(values[i])) for i in top]
