"""The metadata filter language shared by every vector store.

A filter is JSON (see ``docs/retrieval-filters.md``)::

    {"and": [{"field": "lang", "eq": "en"}, {"field": "year", "gte": 2020}]}

:func:`parse_filter` validates it into a small immutable AST (raising
:class:`~lanewise.core.errors.InvalidRequest` that names the bad field,
operator or type), :func:`to_json` turns the AST back into the canonical JSON
form, and :func:`matches` evaluates it against one metadata mapping in pure
Python. Stores translate the AST natively (SQL, Weaviate ``Filter``, bitsets);
:func:`matches` is the reference they are tested against.

Semantics every translation must keep (they are what :func:`matches` does):

- ``null`` and a missing key are the same thing: the field is absent.
- ``eq``/``in``/range operators never match an absent field; ``ne`` is exactly
  ``not eq`` and therefore matches an absent field.
- ``bool`` is its own type: ``true`` never equals ``1``. ``int`` and ``float``
  compare numerically with each other. Strings compare by code point.
- A comparison between different types (a string with a number, a bool in a
  range) is false, never an error, unless a schema is given, in which case it
  is rejected at parse time.
- Metadata values that are not scalars (lists, objects) only answer ``exists``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from lanewise.core.errors import InvalidRequest

Scalar: TypeAlias = str | int | float | bool
FieldType: TypeAlias = Literal["str", "int", "float", "bool"]
Schema: TypeAlias = Mapping[str, FieldType]

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
"""Field names every backend accepts as a column or property name unquoted."""

COMPARISON_OPS = ("eq", "ne", "in", "exists")
RANGE_OPS = ("gt", "gte", "lt", "lte")
LOGICAL_OPS = ("and", "or", "not")
MAX_DEPTH = 32
MAX_IN_VALUES = 1024


@dataclass(frozen=True, slots=True)
class Eq:
    field: str
    value: Scalar


@dataclass(frozen=True, slots=True)
class Ne:
    field: str
    value: Scalar


@dataclass(frozen=True, slots=True)
class In:
    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Range:
    """At least one bound is set; at most one lower and one upper bound."""

    field: str
    gt: str | int | float | None = None
    gte: str | int | float | None = None
    lt: str | int | float | None = None
    lte: str | int | float | None = None


@dataclass(frozen=True, slots=True)
class Exists:
    field: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


Node: TypeAlias = Eq | Ne | In | Range | Exists | And | Or | Not
Leaf: TypeAlias = Eq | Ne | In | Range | Exists


def _bad(detail: str, **where: Any) -> InvalidRequest:
    return InvalidRequest(f"invalid filter: {detail}", **where)


def _kind(value: Any) -> str | None:
    """The comparison kind of a scalar: bool, number or str; None otherwise."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "str"
    return None


def _check_scalar(value: Any, *, field: str, op: str, path: str) -> Scalar:
    kind = _kind(value)
    if kind is None:
        raise _bad(
            f"{path}: operator '{op}' on field '{field}' needs a string, number or "
            f"boolean, got {type(value).__name__}",
            field=field,
            operator=op,
        )
    if kind == "number" and not math.isfinite(value):
        raise _bad(
            f"{path}: operator '{op}' on field '{field}' needs a finite number",
            field=field,
            operator=op,
        )
    return value  # type: ignore[no-any-return]


_SCHEMA_KINDS: dict[str, tuple[str, ...]] = {
    "str": ("str",),
    "int": ("number",),
    "float": ("number",),
    "bool": ("bool",),
}


def _check_schema(field: str, value: Scalar, *, op: str, schema: Schema | None, path: str) -> None:
    if schema is None:
        return
    declared = schema[field]
    if _kind(value) not in _SCHEMA_KINDS[declared]:
        raise _bad(
            f"{path}: field '{field}' is {declared}, operator '{op}' got "
            f"{type(value).__name__} {value!r}",
            field=field,
            operator=op,
        )
    if declared == "int" and isinstance(value, float) and not value.is_integer():
        raise _bad(
            f"{path}: field '{field}' is int, operator '{op}' got {value!r}",
            field=field,
            operator=op,
        )


def parse_filter(raw: Mapping[str, Any] | None, *, schema: Schema | None = None) -> Node | None:
    """Validate a JSON filter into an AST; ``None`` or ``{}`` means "everything".

    With ``schema`` (field name -> ``"str" | "int" | "float" | "bool"``) unknown
    fields and values of the wrong type are rejected too.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _bad(f"a filter is a JSON object, got {type(raw).__name__}")
    if not raw:
        return None
    return _parse(raw, schema=schema, path="$", depth=0)


def _parse(raw: Any, *, schema: Schema | None, path: str, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise _bad(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, Mapping) or not raw:
        raise _bad(f"{path}: expected a non-empty JSON object, got {raw!r}")
    logical = [key for key in raw if key in LOGICAL_OPS]
    if logical:
        if len(raw) != 1:
            raise _bad(
                f"{path}: '{logical[0]}' must be the only key of its object, found {sorted(raw)}",
                operator=logical[0],
            )
        op = logical[0]
        arg = raw[op]
        if op == "not":
            return Not(_parse(arg, schema=schema, path=f"{path}.not", depth=depth + 1))
        if not isinstance(arg, list) or not arg:
            raise _bad(f"{path}.{op}: expected a non-empty list of filters", operator=op)
        children = tuple(
            _parse(child, schema=schema, path=f"{path}.{op}[{i}]", depth=depth + 1)
            for i, child in enumerate(arg)
        )
        return And(children) if op == "and" else Or(children)
    return _parse_leaf(raw, schema=schema, path=path)


def _parse_leaf(raw: Mapping[str, Any], *, schema: Schema | None, path: str) -> Leaf:
    if "field" not in raw:
        raise _bad(f"{path}: expected 'and', 'or', 'not' or 'field', found {sorted(map(str, raw))}")
    field = raw["field"]
    if not isinstance(field, str) or not FIELD_NAME.match(field):
        raise _bad(
            f"{path}: field name {field!r} must match {FIELD_NAME.pattern}",
            field=str(field),
        )
    if schema is not None and field not in schema:
        raise _bad(
            f"{path}: unknown field '{field}'; known fields: {', '.join(sorted(schema))}",
            field=field,
        )
    ops = [key for key in raw if key != "field"]
    unknown = [op for op in ops if op not in COMPARISON_OPS + RANGE_OPS]
    if unknown:
        raise _bad(
            f"{path}: unknown operator '{unknown[0]}' on field '{field}'; allowed: "
            f"{', '.join(COMPARISON_OPS + RANGE_OPS + LOGICAL_OPS)}",
            field=field,
            operator=str(unknown[0]),
        )
    if not ops:
        raise _bad(f"{path}: field '{field}' has no operator", field=field)
    if any(op in RANGE_OPS for op in ops):
        return _parse_range(raw, field, ops, schema=schema, path=path)
    if len(ops) != 1:
        raise _bad(
            f"{path}: field '{field}' has several operators {sorted(ops)}; combine them with 'and'",
            field=field,
            operator=ops[1],
        )
    op = ops[0]
    arg = raw[op]
    if op == "exists":
        if not isinstance(arg, bool):
            raise _bad(
                f"{path}: 'exists' on field '{field}' takes true or false, got {arg!r}",
                field=field,
                operator=op,
            )
        return Exists(field, arg)
    if op == "in":
        if not isinstance(arg, list) or not arg or len(arg) > MAX_IN_VALUES:
            raise _bad(
                f"{path}: 'in' on field '{field}' takes a list of 1 to {MAX_IN_VALUES} values",
                field=field,
                operator=op,
            )
        values = tuple(_check_scalar(v, field=field, op=op, path=path) for v in arg)
        if len({_kind(v) for v in values}) != 1:
            raise _bad(
                f"{path}: 'in' on field '{field}' mixes value types {arg!r}",
                field=field,
                operator=op,
            )
        for value in values:
            _check_schema(field, value, op=op, schema=schema, path=path)
        return In(field, values)
    value = _check_scalar(arg, field=field, op=op, path=path)
    _check_schema(field, value, op=op, schema=schema, path=path)
    return Eq(field, value) if op == "eq" else Ne(field, value)


def _parse_range(
    raw: Mapping[str, Any], field: str, ops: list[str], *, schema: Schema | None, path: str
) -> Range:
    others = [op for op in ops if op not in RANGE_OPS]
    if others:
        raise _bad(
            f"{path}: '{others[0]}' cannot share an object with range operators on "
            f"field '{field}'; combine them with 'and'",
            field=field,
            operator=others[0],
        )
    if ("gt" in ops and "gte" in ops) or ("lt" in ops and "lte" in ops):
        raise _bad(
            f"{path}: field '{field}' has two bounds on the same side {sorted(ops)}",
            field=field,
            operator=sorted(ops)[0],
        )
    bounds: dict[str, str | int | float] = {}
    kinds = set()
    for op in ops:
        value = _check_scalar(raw[op], field=field, op=op, path=path)
        if isinstance(value, bool):
            raise _bad(
                f"{path}: '{op}' on field '{field}' needs a number or string, got a boolean",
                field=field,
                operator=op,
            )
        _check_schema(field, value, op=op, schema=schema, path=path)
        kinds.add(_kind(value))
        bounds[op] = value
    if len(kinds) != 1:
        raise _bad(
            f"{path}: range on field '{field}' mixes strings and numbers",
            field=field,
            operator=ops[0],
        )
    return Range(field, **bounds)


def to_json(node: Node | None) -> dict[str, Any]:
    """The canonical JSON form of an AST (``parse_filter(to_json(n)) == n``)."""
    if node is None:
        return {}
    match node:
        case Eq(field, value):
            return {"field": field, "eq": value}
        case Ne(field, value):
            return {"field": field, "ne": value}
        case In(field, values):
            return {"field": field, "in": list(values)}
        case Exists(field, present):
            return {"field": field, "exists": present}
        case Range(field):
            out: dict[str, Any] = {"field": field}
            for op in RANGE_OPS:
                bound = getattr(node, op)
                if bound is not None:
                    out[op] = bound
            return out
        case And(children):
            return {"and": [to_json(c) for c in children]}
        case Or(children):
            return {"or": [to_json(c) for c in children]}
        case Not(child):
            return {"not": to_json(child)}
    raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover


def fields_of(node: Node | None) -> set[str]:
    """Every metadata field a filter mentions."""
    match node:
        case None:
            return set()
        case And(children) | Or(children):
            return set().union(*(fields_of(c) for c in children))
        case Not(child):
            return fields_of(child)
        case Eq(field) | Ne(field) | In(field) | Range(field) | Exists(field):
            return {field}
    raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover


def _equal(stored: Any, value: Scalar) -> bool:
    kind = _kind(stored)
    return kind is not None and kind == _kind(value) and stored == value


def _in_range(stored: Any, node: Range) -> bool:
    kind = _kind(stored)
    if kind not in ("number", "str"):
        return False
    if kind == "number" and not math.isfinite(stored):
        return False
    for op in RANGE_OPS:
        bound = getattr(node, op)
        if bound is None:
            continue
        if _kind(bound) != kind:
            return False
        if op == "gt" and not stored > bound:
            return False
        if op == "gte" and not stored >= bound:
            return False
        if op == "lt" and not stored < bound:
            return False
        if op == "lte" and not stored <= bound:
            return False
    return True


def evaluate(node: Node | None, metadata: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` satisfies the parsed filter ``node`` (None: always)."""
    match node:
        case None:
            return True
        case Eq(field, value):
            return _equal(metadata.get(field), value)
        case Ne(field, value):
            return not _equal(metadata.get(field), value)
        case In(field, values):
            stored = metadata.get(field)
            return any(_equal(stored, v) for v in values)
        case Range(field):
            return _in_range(metadata.get(field), node)
        case Exists(field, present):
            return (metadata.get(field) is not None) is present
        case And(children):
            return all(evaluate(c, metadata) for c in children)
        case Or(children):
            return any(evaluate(c, metadata) for c in children)
        case Not(child):
            return not evaluate(child, metadata)
    raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover


def matches(filter: Node | Mapping[str, Any] | None, metadata: Mapping[str, Any]) -> bool:
    """Brute-force oracle: does ``metadata`` satisfy ``filter`` (JSON or AST)?"""
    node = filter if filter is None or isinstance(filter, _NODE_TYPES) else parse_filter(filter)
    return evaluate(node, metadata)


_NODE_TYPES = (Eq, Ne, In, Range, Exists, And, Or, Not)
