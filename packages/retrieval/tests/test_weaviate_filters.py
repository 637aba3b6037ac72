"""Filter translation for Weaviate (no server can run here: see docs/weaviate.md).

``interpret`` evaluates translated filters with Weaviate's documented
operator semantics; it is a stand-in for the server, the one boundary that
cannot run here. The translation must agree with the reference evaluator
whether or not the server's ``NotEqual`` matches objects where the property
is null (the docs do not say), so both readings are checked.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lanewise.retrieval.filters import matches, parse_filter
from lanewise.retrieval.stores.weaviate_filters import (
    AllOf,
    AnyOf,
    Leaf,
    Translator,
    encode_metadata,
    to_weaviate,
)
from lanewise.retrieval.strategies import filters, metadata


def _same_type(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return type(a) is type(b)


def interpret(f: Any, props: dict[str, Any], *, null_not_equal: bool) -> bool:
    if f is True or f is False:
        return f
    if isinstance(f, AllOf):
        return all(interpret(c, props, null_not_equal=null_not_equal) for c in f.parts)
    if isinstance(f, AnyOf):
        return any(interpret(c, props, null_not_equal=null_not_equal) for c in f.parts)
    assert isinstance(f, Leaf)
    stored = props.get(f.prop)
    if f.method == "is_none":
        return (stored is None) is f.value
    if stored is None:
        return f.method == "not_equal" and null_not_equal
    value = f.value
    assert _same_type(stored, value), (f.prop, stored, value)  # one type per property
    return {
        "equal": lambda: stored == value,
        "not_equal": lambda: stored != value,
        "greater_than": lambda: stored > value,
        "greater_or_equal": lambda: stored >= value,
        "less_than": lambda: stored < value,
        "less_or_equal": lambda: stored <= value,
    }[f.method]()


@settings(max_examples=300)
@given(filters(max_leaves=6), st.lists(metadata(), min_size=1, max_size=8), st.booleans())
def test_translation_agrees_with_the_reference_evaluator(node, metas, null_not_equal):
    translated = Translator().translate(node)
    for meta in metas:
        got = interpret(translated, encode_metadata(meta), null_not_equal=null_not_equal)
        assert got == matches(node, meta), (node, meta)


@settings(max_examples=200)
@given(filters(max_leaves=6), st.lists(metadata(), min_size=1, max_size=8))
def test_translation_with_a_partial_schema_folds_missing_properties(node, metas):
    """Only properties some object has exist in the collection; the rest fold to constants."""
    known = {name for meta in metas for name in encode_metadata(meta)}
    translated = Translator(known).translate(node)
    for meta in metas:
        got = interpret(translated, encode_metadata(meta), null_not_equal=False)
        assert got == matches(node, meta)


def test_typed_properties_keep_types_apart():
    assert encode_metadata({"tag": "1", "n": 1, "b": True, "l": [1], "z": None}) == {
        "m_tag__s": "1",
        "m_n__n": 1.0,
        "m_b__b": True,
        "m_l__x": True,
    }


def test_eq_reads_the_property_of_the_value_type():
    f = Translator().translate(parse_filter({"field": "year", "eq": 2020}))
    assert f == Leaf("m_year__n", "equal", 2020)


def test_not_is_pushed_to_the_leaves():
    f = Translator().translate(parse_filter({"not": {"field": "lang", "eq": "en"}}))
    assert f == AnyOf((Leaf("m_lang__s", "not_equal", "en"), Leaf("m_lang__s", "is_none", True)))


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ({"field": "nobody", "eq": "x"}, False),
        ({"field": "nobody", "ne": "x"}, True),
        ({"field": "nobody", "exists": False}, True),
        ({"or": [{"field": "nobody", "gt": 1}, {"field": "nobody", "exists": True}]}, False),
    ],
)
def test_unknown_properties_fold_to_constants(raw, folded):
    assert Translator(known=set()).translate(parse_filter(raw)) is folded


def test_no_filter_is_true():
    assert Translator().translate(None) is True


def weaviate_filters_module():
    # Must import: the workspace pins tritonclient 2.66 (protobuf 5.x) for exactly this.
    from weaviate.collections.classes import filters as wf

    return wf


def test_to_weaviate_builds_client_filter_objects():
    wf = weaviate_filters_module()
    tree = Translator().translate(
        parse_filter({"and": [{"field": "lang", "eq": "en"}, {"field": "year", "gte": 2020}]})
    )
    built = to_weaviate(tree)
    assert isinstance(built, wf._FilterAnd)
    leaves = [(f.target, f.operator, f.value) for f in built.filters]
    assert leaves == [
        ("m_lang__s", wf._Operator.EQUAL, "en"),
        ("m_year__n", wf._Operator.GREATER_THAN_EQUAL, 2020),
    ]
