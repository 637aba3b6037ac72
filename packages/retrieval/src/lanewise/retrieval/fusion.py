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

Every fused hit keeps ``dense_rank`` and ``lexical_rank`` (1-based, None when
that path did not return it) so users can see which path found it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import msgspec
from lanewise.core.types import Hit

Mode = Literal["dense", "lexical", "hybrid"]
Fusion = Literal["rrf", "weighted"]
MODES: tuple[str, ...] = get_args(Mode)
FUSIONS: tuple[str, ...] = get_args(Fusion)


def ranked(hits: Sequence[Hit], path: Literal["dense", "lexical"]) -> list[Hit]:
    """The hits of one path, each marked with its rank on that path."""
    field = "dense_rank" if path == "dense" else "lexical_rank"
    return [msgspec.structs.replace(h, **{field: i}) for i, h in enumerate(hits, 1)]


def _normalised(hits: Sequence[Hit]) -> dict[str, float]:
    if not hits:
        return {}
    top, bottom = max(h.score for h in hits), min(h.score for h in hits)
    spread = top - bottom
    return {h.id: (h.score - bottom) / spread if spread > 0 else 1.0 for h in hits}


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
    dense_rank = {h.id: i for i, h in enumerate(dense, 1)}
    lexical_rank = {h.id: i for i, h in enumerate(lexical, 1)}
    by_id = {h.id: h for h in lexical} | {h.id: h for h in dense}
    if fusion == "rrf":
        scores = {
            rid: 2.0
            * (
                (alpha / (rrf_k + dense_rank[rid]) if rid in dense_rank else 0.0)
                + ((1.0 - alpha) / (rrf_k + lexical_rank[rid]) if rid in lexical_rank else 0.0)
            )
            for rid in by_id
        }
    else:
        dn, ln = _normalised(dense), _normalised(lexical)
        scores = {rid: alpha * dn.get(rid, 0.0) + (1.0 - alpha) * ln.get(rid, 0.0) for rid in by_id}

    def best_rank(rid: str) -> int:
        return min(dense_rank.get(rid, 1 << 30), lexical_rank.get(rid, 1 << 30))

    order = sorted(by_id, key=lambda rid: (-scores[rid], best_rank(rid), rid))[:k]
    return [
        msgspec.structs.replace(
            by_id[rid],
            score=scores[rid],
            dense_rank=dense_rank.get(rid),
            lexical_rank=lexical_rank.get(rid),
        )
        for rid in order
    ]
