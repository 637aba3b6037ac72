"""The filter language: parsing, errors, round trips, and the evaluator against a second one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lanewise.core.errors import InvalidRequest
from lanewise.retrieval.filters import (
    And,
    Eq,
    Exists,
    FieldType,
    In,
    Ne,
    Not,
    Or,
    Range,
    fields_of,
    matches,
    parse_filter,
    to_json,
)
from lanewise.retrieval.strategies import filters, metadata


def _typed(value: Any) -> tuple[str, Any] | None:
    """Second implementation's value model: tag every scalar with its type family."""
    if value is None or isinstance(value, list | dict):
        return None
    if type(value) is bool:
        return ("b", value)
    if type(value) in (int, float):
        return ("n", float(value)) if value == value else None
    return ("s", value) if type(value) is str else None


def reference(raw: dict[str, Any], meta: dict[str, Any]) -> bool:
    """An independent evaluator written from docs/retrieval-filters.md, on the JSON form."""
    if "and" in raw:
        return all(reference(c, meta) for c in raw["and"])
    if "or" in raw:
        return any(reference(c, meta) for c in raw["or"])
    if "not" in raw:
        return not reference(raw["not"], meta)
    have = _typed(meta.get(raw["field"]))
    if "exists" in raw:
        return (meta.get(raw["field"]) is not None) == raw["exists"]
    if "eq" in raw:
        return have is not None and have == _typed(raw["eq"])
    if "ne" in raw:
        return not (have is not None and have == _typed(raw["ne"]))
    if "in" in raw:
        return have is not None and have in [_typed(v) for v in raw["in"]]
    if have is None or have[0] == "b":
        return False
    checks = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    for op, check in checks.items():
        if op in raw:
            bound = _typed(raw[op])
            if bound is None or bound[0] != have[0] or not check(have[1], bound[1]):
                return False
    return True


@given(filters())
def test_round_trip_json_ast_json(node: Any) -> None:
    raw = to_json(node)
    assert parse_filter(raw) == node
    assert to_json(parse_filter(raw)) == raw


@settings(max_examples=300)
@given(filters(), st.lists(metadata(), min_size=1, max_size=20))
def test_evaluator_agrees_with_reference(node: Any, rows: list[dict[str, Any]]) -> None:
    raw = to_json(node)
    for meta in rows:
        assert matches(node, meta) == reference(raw, meta), (raw, meta)
        assert matches(raw, meta) == matches(node, meta)


@given(filters(), metadata())
def test_not_is_complement(node: Any, meta: dict[str, Any]) -> None:
    assert matches(Not(node), meta) is not matches(node, meta)


def test_examples() -> None:
    f = {"and": [{"field": "lang", "eq": "en"}, {"field": "year", "gte": 2020}]}
    assert matches(f, {"lang": "en", "year": 2021})
    assert not matches(f, {"lang": "en", "year": 2019})
    assert not matches(f, {"lang": "en"})
    assert matches({"field": "lang", "ne": "en"}, {})
    assert not matches({"field": "flag", "eq": 1}, {"flag": True})
    assert matches({"field": "n", "eq": 1}, {"n": 1.0})
    assert matches({"field": "x", "exists": False}, {"x": None})
    assert not matches({"field": "x", "exists": True}, {"x": None})
    assert matches({"field": "x", "exists": True}, {"x": [1]})
    assert not matches({"field": "x", "eq": 1}, {"x": [1]})
    assert matches({"field": "s", "gte": "b", "lt": "c"}, {"s": "bz"})
    assert not matches({"field": "s", "gte": 1}, {"s": "1"})
    assert matches(
        {"or": [{"field": "a", "in": ["x", "y"]}, {"not": {"field": "b", "exists": True}}]},
        {"b": 1, "a": "y"},
    )
    assert parse_filter(None) is None
    assert parse_filter({}) is None
    assert matches(None, {"a": 1})


def test_ast_shapes() -> None:
    node = parse_filter(
        {"or": [{"field": "a", "in": [1, 2.5]}, {"not": {"field": "b", "gt": 1, "lte": 3}}]}
    )
    assert node == Or((In("a", (1, 2.5)), Not(Range("b", gt=1, lte=3))))
    assert fields_of(node) == {"a", "b"}
    assert parse_filter({"field": "c", "exists": True}) == Exists("c", True)
    assert parse_filter({"and": [{"field": "c", "ne": "x"}]}) == And((Ne("c", "x"),))
    assert parse_filter({"field": "c", "eq": False}) == Eq("c", False)


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"field": "year", "gtt": 3}, ["gtt", "year"]),
        ({"field": "year"}, ["year", "no operator"]),
        ({"field": "1year", "eq": 3}, ["1year"]),
        ({"field": "a b", "eq": 3}, ["a b"]),
        ({"field": "year", "eq": None}, ["year", "eq", "NoneType"]),
        ({"field": "year", "eq": [1]}, ["year", "eq", "list"]),
        ({"field": "year", "eq": float("nan")}, ["year", "finite"]),
        ({"field": "year", "in": []}, ["year", "in"]),
        ({"field": "year", "in": [1, "a"]}, ["year", "mixes"]),
        ({"field": "year", "gt": 1, "gte": 2}, ["year", "same side"]),
        ({"field": "year", "gt": True}, ["year", "boolean"]),
        ({"field": "year", "gt": 1, "lt": "z"}, ["year", "mixes"]),
        ({"field": "year", "gt": 1, "eq": 3}, ["year", "eq"]),
        ({"field": "year", "eq": 1, "ne": 3}, ["year", "several"]),
        ({"field": "year", "exists": 1}, ["year", "exists"]),
        ({"and": []}, ["$.and", "non-empty"]),
        ({"and": {"field": "a", "eq": 1}}, ["$.and"]),
        ({"and": [{"field": "a", "eq": 1}], "field": "b"}, ["and", "only key"]),
        ({"not": []}, ["$.not"]),
        ({"lang": {"$eq": "en"}}, ["field", "lang"]),
        (
            {"and": [{"field": "a", "eq": 1}, {"field": "b", "between": 1}]},
            ["$.and[1]", "between", "'b'"],
        ),
    ],
)
def test_bad_filters_name_the_problem(raw: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_filter(raw)
    for name in names:
        assert name in caught.value.detail


def test_deep_nesting_rejected() -> None:
    raw: dict[str, Any] = {"field": "a", "eq": 1}
    for _ in range(40):
        raw = {"not": raw}
    with pytest.raises(InvalidRequest, match="deeper"):
        parse_filter(raw)


def test_schema_rejects_unknown_fields_and_wrong_types() -> None:
    schema: dict[str, FieldType] = {"lang": "str", "year": "int", "score": "float", "draft": "bool"}
    assert parse_filter({"field": "score", "gte": 1}, schema=schema) == Range("score", gte=1)
    with pytest.raises(InvalidRequest, match="unknown field 'author'") as caught:
        parse_filter({"field": "author", "eq": "x"}, schema=schema)
    assert caught.value.extensions["field"] == "author"
    with pytest.raises(InvalidRequest, match=r"'year' is int.*'eq' got str") as caught:
        parse_filter({"field": "year", "eq": "2020"}, schema=schema)
    assert caught.value.extensions == {"field": "year", "operator": "eq"}
    with pytest.raises(InvalidRequest, match="'year' is int"):
        parse_filter({"field": "year", "in": [2020, 2020.5]}, schema=schema)
    with pytest.raises(InvalidRequest, match="'draft' is bool"):
        parse_filter({"field": "draft", "eq": 1}, schema=schema)
    with pytest.raises(InvalidRequest, match="'lang' is str"):
        parse_filter({"field": "lang", "lt": 3}, schema=schema)


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_filter([1, 2])  # type: ignore[arg-type]
