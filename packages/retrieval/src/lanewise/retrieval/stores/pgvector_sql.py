"""The filter language as SQL over a ``jsonb`` metadata column, every value a bound parameter.

Each translated node is a boolean that is never NULL (absent fields are
COALESCEd to false), so ``NOT`` means exactly "does not match", as in
:func:`lanewise.retrieval.filters.evaluate`:

- ``eq`` compares jsonb values: numbers numerically (``1 = 1.0``), booleans
  only with booleans, strings byte-wise; absent and ``null`` never equal.
- ranges apply only when the stored value has the bound's JSON type
  (CASE guards the cast, since SQL does not promise short-circuit AND);
  strings compare with ``COLLATE "C"`` (code point order, as in Python).
- field names travel as parameters too (``metadata -> %s``), never as SQL text.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from lanewise.retrieval.filters import And, Eq, Exists, In, Ne, Node, Not, Or, Range

SQL = tuple[str, list[Any]]

_RANGE_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _jsonb(value: Any) -> str:
    return json.dumps(value)


def _number(value: int | float) -> Decimal:
    # repr round-trips a float exactly, so numeric compares like Python does.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def filter_sql(node: Node | None, column: str = "metadata") -> SQL:
    """``(sql, params)`` for a WHERE fragment; ``("TRUE", [])`` for no filter."""
    match node:
        case None:
            return "TRUE", []
        case Eq(field, value):
            return f"COALESCE({column} -> %s = %s::jsonb, FALSE)", [field, _jsonb(value)]
        case Ne(field, value):
            return f"NOT COALESCE({column} -> %s = %s::jsonb, FALSE)", [field, _jsonb(value)]
        case In(field, values):
            return (
                f"COALESCE({column} -> %s = ANY(%s::jsonb[]), FALSE)",
                [field, [_jsonb(v) for v in values]],
            )
        case Exists(field, present):
            test = "<>" if present else "="
            return f"(COALESCE(jsonb_typeof({column} -> %s), 'null') {test} 'null')", [field]
        case Range(field):
            return _range_sql(node, column)
        case And(children) | Or(children):
            parts = [filter_sql(c, column) for c in children]
            joiner = " AND " if isinstance(node, And) else " OR "
            return (
                "(" + joiner.join(sql for sql, _ in parts) + ")",
                [p for _, params in parts for p in params],
            )
        case Not(child):
            sql, params = filter_sql(child, column)
            return f"(NOT {sql})", params
    raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover


def _range_sql(node: Range, column: str) -> SQL:
    bounds = [(op, getattr(node, op)) for op in _RANGE_SQL if getattr(node, op) is not None]
    numeric = not isinstance(bounds[0][1], str)
    params: list[Any] = [node.field]
    tests = []
    for op, bound in bounds:
        if numeric:
            tests.append(f"({column} ->> %s)::numeric {_RANGE_SQL[op]} %s::numeric")
            params += [node.field, _number(bound)]
        else:
            tests.append(f'({column} ->> %s) COLLATE "C" {_RANGE_SQL[op]} %s COLLATE "C"')
            params += [node.field, bound]
    kind = "number" if numeric else "string"
    sql = (
        f"(CASE WHEN jsonb_typeof({column} -> %s) = '{kind}' "
        f"THEN {' AND '.join(tests)} ELSE FALSE END)"
    )
    return sql, params
