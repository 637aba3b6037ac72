"""The filter language as ``weaviate.classes.query.Filter`` objects.

Weaviate properties have one type each, while lanewise metadata may hold a
string in one object and a number in another under the same key. So each
metadata field is stored in up to four typed properties: ``m_<field>__s``
(text, ``field`` tokenization, so ``equal`` means the whole value),
``m_<field>__n`` (number), ``m_<field>__b`` (boolean) and ``m_<field>__x``
(a marker for lists/objects, which only answer ``exists``). A comparison
then reads only the property of its value's type, which is exactly the
language's rule that values of different types never compare equal.

Negation is pushed down to the leaves (De Morgan) instead of relying on the
server's ``Not`` operator, and ``ne``/negated ranges add ``is_none(True)``
so they hold whether or not the server's ``NotEqual`` matches nulls. That
needs ``index_null_state`` on the collection (the store enables it).
Properties that do not exist yet fold to constants (nothing equals a value
no object has), so a filter never fails on a field nobody has written.

The translation builds a small neutral tree (:class:`Leaf`, :class:`AllOf`,
:class:`AnyOf`) and :func:`to_weaviate` turns it into client objects at query
time, so the logic is testable where the client cannot be imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from lanewise.retrieval.filters import And, Eq, Exists, In, Ne, Node, Not, Or, Range, Scalar

Method = Literal[
    "equal",
    "not_equal",
    "is_none",
    "greater_than",
    "greater_or_equal",
    "less_than",
    "less_or_equal",
    "contains_any",
]


@dataclass(frozen=True)
class Leaf:
    """``Filter.by_property(prop).<method>(value)``."""

    prop: str
    method: Method
    value: Any


@dataclass(frozen=True)
class AllOf:
    parts: tuple[WFilter, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[WFilter, ...]


WFilter: TypeAlias = Leaf | AllOf | AnyOf
Folded: TypeAlias = WFilter | bool

KINDS = ("s", "n", "b", "x")
_NEGATED = {"gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"}
_METHOD: dict[str, Method] = {
    "gt": "greater_than",
    "gte": "greater_or_equal",
    "lt": "less_than",
    "lte": "less_or_equal",
}


def kind_of(value: Any) -> str | None:
    """Which typed property holds ``value`` (None for null: absent)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int | float):
        return "n"
    if isinstance(value, str):
        return "s"
    return "x"


def prop(field: str, kind: str) -> str:
    return f"m_{field}__{kind}"


def encode_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The typed properties one object's metadata becomes."""
    out: dict[str, Any] = {}
    for field, value in metadata.items():
        kind = kind_of(value)
        if kind is None:
            continue
        if kind == "x":
            out[prop(field, "x")] = True
        elif kind == "n":
            out[prop(field, "n")] = float(value)
        else:
            out[prop(field, kind)] = value
    return out


def all_of(parts: Iterable[Folded]) -> Folded:
    kept: list[WFilter] = []
    for part in parts:
        if part is False:
            return False
        if part is not True:
            kept.append(part)
    if not kept:
        return True
    return kept[0] if len(kept) == 1 else AllOf(tuple(kept))


def any_of(parts: Iterable[Folded]) -> Folded:
    kept: list[WFilter] = []
    for part in parts:
        if part is True:
            return True
        if part is not False:
            kept.append(part)
    if not kept:
        return False
    return kept[0] if len(kept) == 1 else AnyOf(tuple(kept))


class Translator:
    """``known``: property names the collection has (None: assume all exist)."""

    def __init__(self, known: set[str] | None = None) -> None:
        self.known = known

    def _has(self, name: str) -> bool:
        return self.known is None or name in self.known

    def _leaf(self, name: str, method: Method, value: Any, missing: bool) -> Folded:
        return Leaf(name, method, value) if self._has(name) else missing

    def _eq(self, field: str, value: Scalar) -> Folded:
        kind = kind_of(value)
        assert kind is not None
        return self._leaf(prop(field, kind), "equal", value, missing=False)

    def _ne(self, field: str, value: Scalar) -> Folded:
        kind = kind_of(value)
        assert kind is not None
        name = prop(field, kind)
        return any_of(
            [
                self._leaf(name, "not_equal", value, missing=True),
                self._leaf(name, "is_none", True, missing=True),
            ]
        )

    def translate(self, node: Node | None, negate: bool = False) -> Folded:
        """A weaviate filter, or True (no filter) / False (matches nothing)."""
        match node:
            case None:
                return not negate
            case Eq(field, value):
                return self._ne(field, value) if negate else self._eq(field, value)
            case Ne(field, value):
                return self._eq(field, value) if negate else self._ne(field, value)
            case In(field, values):
                if negate:
                    return all_of(self._ne(field, v) for v in values)
                return any_of(self._eq(field, v) for v in values)
            case Range(field):
                return self._range(node, negate)
            case Exists(field, present):
                wanted = present != negate
                checks = [
                    self._leaf(prop(field, k), "is_none", not wanted, missing=not wanted)
                    for k in KINDS
                ]
                return any_of(checks) if wanted else all_of(checks)
            case And(children):
                combine: Callable[[Iterable[Folded]], Folded] = any_of if negate else all_of
                return combine(self.translate(c, negate) for c in children)
            case Or(children):
                combine = all_of if negate else any_of
                return combine(self.translate(c, negate) for c in children)
            case Not(child):
                return self.translate(child, not negate)
        raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover

    def _range(self, node: Range, negate: bool) -> Folded:
        bounds = [(op, getattr(node, op)) for op in _METHOD if getattr(node, op) is not None]
        kind = kind_of(bounds[0][1])
        assert kind in ("s", "n")
        name = prop(node.field, kind)
        if not negate:
            return all_of(self._leaf(name, _METHOD[op], b, missing=False) for op, b in bounds)
        return any_of(
            [
                self._leaf(name, "is_none", True, missing=True),
                *(self._leaf(name, _METHOD[_NEGATED[op]], b, missing=False) for op, b in bounds),
            ]
        )


def to_weaviate(tree: WFilter) -> Any:
    """The weaviate-client v4 ``Filter`` object for a translated tree."""
    from weaviate.classes.query import Filter

    match tree:
        case Leaf(prop, method, value):
            return getattr(Filter.by_property(prop), method)(value)
        case AllOf(parts):
            return Filter.all_of([to_weaviate(p) for p in parts])
        case AnyOf(parts):
            return Filter.any_of([to_weaviate(p) for p in parts])
    raise TypeError(f"not a translated filter: {tree!r}")  # pragma: no cover
