"""Fusion of a dense and a lexical ranking: the formulas, the ranks each hit keeps."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lanewise.core.types import Hit
from lanewise.retrieval.fusion import GATE, confident, fuse, ranked


def hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(id=rid, score=score, text=f"text {rid}") for rid, score in pairs]


DENSE = hits(("a", 0.9), ("b", 0.8), ("c", 0.5))
LEXICAL = hits(("c", 12.0), ("d", 6.0), ("a", 3.0))


def test_rrf_adds_reciprocal_ranks():
    fused = fuse(DENSE, LEXICAL, k=4, fusion="rrf", alpha=0.5, rrf_k=60)
    scores = {h.id: h.score for h in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["b"] == pytest.approx(1 / 62)
    assert scores["d"] == pytest.approx(1 / 62)
    # a and c tie, as do b and d: the better best rank first, then the id.
    assert [h.id for h in fused] == ["a", "c", "b", "d"]
    assert [(h.dense_rank, h.lexical_rank) for h in fused] == [(1, 3), (3, 1), (2, None), (None, 2)]


def test_weighted_normalises_each_list_then_mixes():
    fused = fuse(DENSE, LEXICAL, k=4, fusion="weighted", alpha=0.7)
    scores = {h.id: h.score for h in fused}
    # dense: a 1, b 0.75, c 0; lexical: c 1, d 1/3, a 0.
    assert scores == pytest.approx({"a": 0.7, "b": 0.525, "c": 0.3, "d": 0.1})
    assert [h.id for h in fused] == ["a", "b", "c", "d"]
    assert fused[0].text == "text a"


def test_alpha_one_and_zero_give_one_side_only():
    assert [h.id for h in fuse(DENSE, LEXICAL, k=2, fusion="weighted", alpha=1.0)] == ["a", "b"]
    assert [h.id for h in fuse(DENSE, LEXICAL, k=2, fusion="weighted", alpha=0.0)] == ["c", "d"]
    assert [h.id for h in fuse(DENSE, LEXICAL, k=2, fusion="rrf", alpha=0.0)] == ["c", "d"]


def test_empty_sides_and_a_single_hit():
    assert fuse([], [], k=3) == []
    (only,) = fuse([], hits(("x", 2.0)), k=3, fusion="weighted", alpha=0.7)
    assert (only.id, only.dense_rank, only.lexical_rank) == ("x", None, 1)
    assert only.score == pytest.approx(0.3)


def test_gated_uses_the_lexical_side_only_when_bm25_has_a_clear_winner():
    flat = hits(("c", 12.0), ("d", 11.0), ("a", 3.0))  # 12 < GATE x 11: not confident
    peaked = hits(("c", 12.0), ("d", 11.0 / GATE), ("a", 3.0))  # 12 > GATE x 11 / GATE
    assert not confident([(h.id, h.score) for h in flat])
    assert confident([(h.id, h.score) for h in peaked])
    assert confident([("x", 0.5)])
    assert not confident([])
    # Closed gate: the dense ranking alone (lexical-only hits score 0, after it).
    closed = fuse(DENSE, flat, k=4, fusion="gated", alpha=0.7)
    assert [h.id for h in closed] == ["a", "b", "c", "d"]
    assert [h.score for h in closed] == pytest.approx([1.0, 0.75, 0.0, 0.0])
    assert (closed[3].dense_rank, closed[3].lexical_rank) == (None, 2)
    # Open gate: exactly the weighted fusion.
    opened = fuse(DENSE, peaked, k=4, fusion="gated", alpha=0.3)
    assert opened == fuse(DENSE, peaked, k=4, fusion="weighted", alpha=0.3)
    assert opened[0].id == "c"


def test_ranked_marks_one_path():
    assert [(h.dense_rank, h.lexical_rank) for h in ranked(DENSE, "dense")] == [
        (1, None),
        (2, None),
        (3, None),
    ]
    assert [h.lexical_rank for h in ranked(LEXICAL, "lexical")] == [1, 2, 3]


_ranking = st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=8).map(
    lambda ids: [Hit(id=rid, score=float(len(ids) - i)) for i, rid in enumerate(ids)]
)


@given(
    dense=_ranking,
    lexical=_ranking,
    k=st.integers(1, 12),
    fusion=st.sampled_from(("rrf", "weighted", "gated")),
    alpha=st.floats(0, 1),
)
def test_fused_hits_keep_their_ranks_and_are_sorted(dense, lexical, k, fusion, alpha):
    fused = fuse(dense, lexical, k=k, fusion=fusion, alpha=alpha)
    union = {h.id for h in dense} | {h.id for h in lexical}
    assert len(fused) == min(k, len(union))
    assert len({h.id for h in fused}) == len(fused)
    assert all(a.score >= b.score for a, b in itertools.pairwise(fused))
    dense_rank = {h.id: i for i, h in enumerate(dense, 1)}
    lexical_rank = {h.id: i for i, h in enumerate(lexical, 1)}
    for hit in fused:
        assert hit.dense_rank == dense_rank.get(hit.id)
        assert hit.lexical_rank == lexical_rank.get(hit.id)
        assert 0.0 <= hit.score <= 1.0 + 1e-9
