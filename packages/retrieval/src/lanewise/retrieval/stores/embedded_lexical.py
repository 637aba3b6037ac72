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
array per term the first time a query needs that term; the term's BM25
contributions (which depend on the average length and the document counts, so
on every write) are computed then and kept until the next write, so a query
costs one add per posting, and, unfiltered, only a binary search per candidate
for the terms most slots hold (MaxScore pruning, exact: see ``_pruned``).
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
F32 = npt.NDArray[np.float32]


class LexicalIndex:
    def __init__(self) -> None:
        self.lengths = _Grow(np.int32, 0)
        self.size = 0
        self.live_length = 0
        self.vocabulary: dict[str, int] = {}
        self._parts: list[list[tuple[I32, I32]]] = []
        self._weights: dict[int, tuple[int, I32, F32]] = {}
        self.version = 0
        """Bumped by every append and kill: cached term weights older than it are stale."""

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
        self.version += 1
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
        self.version += 1

    def _term(self, term: str, live: Mask, live_count: int) -> tuple[I32, F32] | None:
        """The term's live slots and their BM25 contributions ``idf * tf (k1 + 1) / (tf +
        norm)``, computed once per term and write (every write changes the average length
        and the document counts), so a query costs one add per posting."""
        tid = self.vocabulary.get(term)
        if tid is None:
            return None
        cached = self._weights.get(tid)
        if cached is not None and cached[0] == self.version:
            return cached[1], cached[2]
        parts = self._parts[tid]
        slots = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        tfs = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        alive = live[slots]
        if not alive.all():
            # A dead slot never lives again (slots are append-only): drop it for good.
            slots, tfs = slots[alive], tfs[alive]
        parts[:] = [(slots, tfs)]
        avg = self.live_length / live_count
        tf = tfs.astype(np.float64)
        norm = K1 * (1.0 - B + B * self.lengths.data[slots] / avg) if avg > 0 else K1
        # float32 halves the cache (one value per posting); scores still add up in float64.
        weight = idf(live_count, len(slots)) * (tf * (K1 + 1.0) / (tf + norm))
        contributions = weight.astype(np.float32)
        self._weights[tid] = (self.version, slots, contributions)
        return slots, contributions

    def search(
        self,
        terms: Sequence[str],
        k: int,
        live: Mask,
        allowed: Mask,
        live_count: int,
        allowed_count: int,
        *,
        prune: bool = True,
    ) -> list[tuple[int, float]]:
        """Top-k (slot, BM25) among ``allowed`` slots with at least one query term."""
        if live_count == 0:
            return []
        found = []
        for term in terms:
            posting = self._term(term, live, live_count)
            if posting is not None and len(posting[0]):
                found.append(posting)
        if not found:
            return []
        filtered = allowed_count != live_count
        # A selective filter leaves too few candidates to prune with; the full path
        # is cheap there anyway (the mask keeps the top-k selection small).
        if prune and allowed_count > self.size // 20:
            pruned = self._pruned(found, k, allowed if filtered else None)
            if pruned is not None:
                return pruned
        scores = np.zeros(self.size, dtype=np.float64)
        for slots, contributions in found:
            # Postings hold each slot once, so a fancy-index add is exact.
            scores[slots] += contributions
        # Every matching slot scores > 0 (idf > 0, tf >= 1); the filter applies at the end.
        hit = scores > 0
        if filtered:
            hit &= allowed
        candidates = np.flatnonzero(hit)
        return _top(candidates, scores[candidates], k)

    def _pruned(
        self, found: list[tuple[I32, F32]], k: int, allowed: Mask | None
    ) -> list[tuple[int, float]] | None:
        """The exact top k without touching most postings of the query's common terms, or
        None when that cannot be shown (then the caller scores every posting).

        MaxScore (Turtle and Flood, 1995): the terms in more than 1/20 of the slots are
        "tail" terms. Candidates are the slots holding any other ("head") term, scored
        in full (every term's contribution, found by binary search in its sorted
        postings, added in query order as the full path adds them, so scores are
        identical). A slot outside the candidates holds tail terms only, so it scores
        at most the sum of the tail terms' largest contributions; when that bound is
        below the candidates' k-th best score, no such slot can enter the top k.
        """
        limit = self.size // 20
        head = [slots for slots, _ in found if len(slots) <= limit]
        tail = [contributions for slots, contributions in found if len(slots) > limit]
        if not head or not tail:
            return None
        union = np.unique(np.concatenate(head)) if len(head) > 1 else head[0]
        if allowed is not None:
            union = union[allowed[union]]
        if len(union) < k:
            return None
        scores = np.zeros(len(union), dtype=np.float64)
        for slots, contributions in found:
            if len(slots) <= limit:  # a head term: find its (few) slots among the candidates
                at = np.minimum(np.searchsorted(union, slots), len(union) - 1)
                held = union[at] == slots  # all of them, unless the filter dropped some
                scores[at[held]] += contributions[held]
            else:  # a tail term: find the candidates among its (many) slots
                at = np.minimum(np.searchsorted(slots, union), len(slots) - 1)
                holds = slots[at] == union
                scores[holds] += contributions[at[holds]]
        kth = float(-np.partition(-scores, k - 1)[k - 1])
        bound = sum(float(c.max()) for c in tail)
        if not bound * (1.0 + 1e-9) < kth:
            return None
        return _top(union, scores, k)


def _top(candidates: Any, values: Any, k: int) -> list[tuple[int, float]]:
    """The ``k`` best (slot, score) of ``candidates`` (slots) scored ``values``, best first."""
    top = np.arange(len(candidates))
    if k < len(candidates):
        top = np.argpartition(-values, k - 1)[:k]
    top = top[np.argsort(-values[top], kind="stable")]
    return [(int(candidates[i]), float(values[i])) for i in top]
