"""Search modes and the fusion of a dense and a lexical ranking into one.

- ``rrf`` (reciprocal rank fusion): ``score = 2 * (alpha / (rrf_k + dense_rank)
  + (1 - alpha) / (rrf_k + lexical_rank))``, a missing rank contributing 0. It
  uses ranks only, so it needs no calibration between cosine and BM25 scales;
  ``alpha = 0.5`` is the textbook RRF (Cormack et al., 2009).
- ``weighted``: each list's scores are min-max normalised to [0, 1] within the
  list (Weaviate's ``relativeScoreFusion``), then
  ``score = alpha * dense + (1 - alpha) * lexical``. It keeps how much better
  the first hit is than the second, which ranks cannot, at the cost of being
  sensitive to outliers in either list.
- ``gated``: ``weighted``, but the lexical side counts only when BM25 is confident,
  i.e. its best score is at least :data:`GATE` times its second (or it found one hit
  alone); otherwise the dense ranking alone decides (``alpha`` taken as 1). Questions
  in users' own words give BM25 a flat list of weak partial matches, whose weight in
  ``weighted`` costs them more than it gains elsewhere; an exact identifier, error
  name or number gives it a clear winner. Measured in docs/retrieval.md.

Every fused hit keeps ``dense_rank`` and ``lexical_rank`` (1-based, None when
that path did not return it) so users can see which path found it.

A store may fuse itself (:class:`HybridStore`): the embedded store walks both
indexes under one lock in one worker thread and fuses row numbers, so it reads
only the ``k`` winning rows from SQLite instead of both candidate lists (the
reads, not the index walks, were most of hybrid's cost over dense).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Literal, NamedTuple, Protocol, TypeVar, get_args, runtime_checkable

import msgspec
from lanewise.core.protocols import Filter
from lanewise.core.types import Hit

Mode = Literal["dense", "lexical", "hybrid"]
Fusion = Literal["rrf", "weighted", "gated"]
MODES: tuple[str, ...] = get_args(Mode)
FUSIONS: tuple[str, ...] = get_args(Fusion)


GATE = 1.4
"""``gated`` fusion: the lexical side counts when BM25's best score is >= GATE x its second.
Picked on the stdlib golden set (docs/retrieval.md): 1.3-1.5 measure alike there; 1.2 lets
paraphrases' flat BM25 lists through, 1.6 and up changes no question."""


def confident(lexical: Sequence[tuple[object, float]]) -> bool:
    """Whether BM25 has a clear winner: one hit alone, or the best >= GATE x the second."""
    if len(lexical) == 1:
        return True
    top = heapq.nlargest(2, (score for _, score in lexical))
    return len(top) == 2 and top[0] >= GATE * top[1]


def ranked(hits: Sequence[Hit], path: Literal["dense", "lexical"]) -> list[Hit]:
    """The hits of one path, each marked with its rank on that path."""
    field = "dense_rank" if path == "dense" else "lexical_rank"
    return [msgspec.structs.replace(h, **{field: i}) for i, h in enumerate(hits, 1)]


Key = TypeVar("Key", bound=Hashable)


def _normalised(scores: Mapping[Key, float]) -> dict[Key, float]:
    if not scores:
        return {}
    top, bottom = max(scores.values()), min(scores.values())
    spread = top - bottom
    return {key: (v - bottom) / spread if spread > 0 else 1.0 for key, v in scores.items()}


def fused_order(
    dense: Sequence[tuple[Key, float]],
    lexical: Sequence[tuple[Key, float]],
    *,
    k: int,
    fusion: Fusion,
    alpha: float,
    rrf_k: int,
    name: Callable[[Key], str],
) -> list[tuple[Key, float, int | None, int | None]]:
    """Top ``k`` of the union as (key, fused score, dense rank, lexical rank); ties go to
    the better best rank, then the smaller ``name(key)`` (the hit's id).

    Keys are whatever identifies a candidate to the caller: hit ids for :func:`fuse`, a
    store's row numbers when it fuses before reading its rows (only the winners are read).
    """
    dense_rank = {key: i for i, (key, _) in enumerate(dense, 1)}
    lexical_rank = {key: i for i, (key, _) in enumerate(lexical, 1)}
    keys = list(dict.fromkeys([*(key for key, _ in dense), *(key for key, _ in lexical)]))
    if fusion == "rrf":
        scores = {
            key: 2.0
            * (
                (alpha / (rrf_k + dense_rank[key]) if key in dense_rank else 0.0)
                + ((1.0 - alpha) / (rrf_k + lexical_rank[key]) if key in lexical_rank else 0.0)
            )
            for key in keys
        }
    else:
        if fusion == "gated" and not confident(lexical):
            alpha = 1.0
        dn, ln = _normalised(dict(dense)), _normalised(dict(lexical))
        scores = {key: alpha * dn.get(key, 0.0) + (1.0 - alpha) * ln.get(key, 0.0) for key in keys}

    def best_rank(key: Key) -> int:
        return min(dense_rank.get(key, 1 << 30), lexical_rank.get(key, 1 << 30))

    order = sorted(keys, key=lambda key: (-scores[key], best_rank(key), name(key)))[:k]
    return [(key, scores[key], dense_rank.get(key), lexical_rank.get(key)) for key in order]


def fuse(
    dense: Sequence[Hit],
    lexical: Sequence[Hit],
    *,
    k: int,
    fusion: Fusion = "rrf",
    alpha: float = 0.5,
    rrf_k: int = 60,
) -> list[Hit]:
    """Top ``k`` of the union, by fused score (ties: better best rank, then id)."""
    by_id = {h.id: h for h in lexical} | {h.id: h for h in dense}
    order = fused_order(
        [(h.id, h.score) for h in dense],
        [(h.id, h.score) for h in lexical],
        k=k,
        fusion=fusion,
        alpha=alpha,
        rrf_k=rrf_k,
        name=str,
    )
    return [
        msgspec.structs.replace(by_id[rid], score=score, dense_rank=dr, lexical_rank=lr)
        for rid, score, dr, lr in order
    ]


class Fused(NamedTuple):
    hits: list[Hit]
    dense_hits: int
    """Candidates the dense path returned (before fusion)."""
    lexical_hits: int


@runtime_checkable
class HybridStore(Protocol):
    """A store that fuses its own dense and lexical candidates: the result equals
    :func:`fuse` of its ``search`` and ``search_lexical`` at ``depth``, cut to ``k``."""

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
    ) -> Fused: ...
