"""Hypothesis strategies for filters and metadata (used by the tests and the contract suite).

The metadata they draw uses a small vocabulary of field names and values so
that random filters actually select something (a filter over random strings
would almost never match and test nothing).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from lanewise.retrieval.filters import And, Eq, Exists, In, Ne, Node, Not, Or, Range

FIELDS = ("lang", "year", "score", "draft", "tag")
"""lang: str, year: int, score: float, draft: bool, tag: str or int (mixed on purpose)."""

LANGS = ("en", "de", "fr", "ja")

_lang = st.sampled_from(LANGS)
_year = st.integers(min_value=2015, max_value=2025)
_score = st.sampled_from((0.0, 0.25, 0.5, 0.75, 1.0, -1.5, 2.0))
_draft = st.booleans()
_tag = st.one_of(st.sampled_from(("a", "b", "c")), st.integers(0, 3))

_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "lang": _lang,
    "year": _year,
    "score": _score,
    "draft": _draft,
    "tag": _tag,
}


@st.composite
def metadata(draw: st.DrawFn) -> dict[str, Any]:
    """A metadata dict: each known field present, absent, or null."""
    out: dict[str, Any] = {}
    for field in FIELDS:
        choice = draw(st.integers(0, 5))
        if choice == 0:
            continue
        out[field] = None if choice == 1 else draw(_FIELD_VALUES[field])
    return out


_any_scalar = st.one_of(_lang, _year, _score, _draft, st.sampled_from(("a", "b", "c")))


def _value_for(field: str) -> st.SearchStrategy[Any]:
    # Mostly the field's own type, sometimes any scalar (type mismatches must be false).
    return st.one_of(_FIELD_VALUES[field], _FIELD_VALUES[field], _any_scalar)


@st.composite
def leaves(draw: st.DrawFn) -> Node:
    field = draw(st.sampled_from(FIELDS))
    op = draw(st.sampled_from(("eq", "ne", "in", "range", "exists")))
    if op == "exists":
        return Exists(field, draw(st.booleans()))
    if op == "in":
        first = draw(_value_for(field))
        same_type = st.one_of(_FIELD_VALUES[field], _any_scalar).filter(
            lambda v: type(v) is type(first)
        )
        more = draw(st.lists(same_type, max_size=3))
        return In(field, (first, *more))
    value = draw(_value_for(field))
    if op == "eq":
        return Eq(field, value)
    if op == "ne":
        return Ne(field, value)
    numeric = draw(st.booleans()) if field == "tag" else field in ("year", "score")
    bound = st.sampled_from((2014, 2018, 2020.5, 2026, 0, 0.5, 1)) if numeric else _lang
    lower = draw(st.sampled_from((None, "gt", "gte")))
    upper = draw(st.sampled_from((None, "lt", "lte") if lower else ("lt", "lte")))
    bounds: dict[str, Any] = {}
    if lower:
        bounds[lower] = draw(bound)
    if upper:
        bounds[upper] = draw(bound)
    return Range(field, **bounds)


def filters(max_leaves: int = 8) -> st.SearchStrategy[Node]:
    """Random filter ASTs over :data:`FIELDS`."""
    return st.recursive(
        leaves(),
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda c: And(tuple(c))),
            st.lists(children, min_size=1, max_size=3).map(lambda c: Or(tuple(c))),
            children.map(Not),
        ),
        max_leaves=max_leaves,
    )
