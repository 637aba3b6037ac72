"""The filter language (:mod:`lanewise.retrieval.filters`) as JSON Schema, for ``/schema``.

It accepts exactly what :func:`~lanewise.retrieval.filters.parse_filter` accepts
(apart from the nesting bound, ``MAX_DEPTH``), so clients and schema-driven
tools generate filters the gateway takes; a test checks the two agree.
"""

from __future__ import annotations

from typing import Any

from lanewise.retrieval.filters import FIELD_NAME, MAX_IN_VALUES, RANGE_OPS

NODE_REF = {"$ref": "#/components/schemas/FilterNode"}
_FIELD = {"type": "string", "pattern": FIELD_NAME.pattern}
_SCALAR = {"type": ["string", "number", "boolean"]}


def _object(required: list[str], properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _range(kind: str) -> dict[str, Any]:
    return _object(
        ["field"],
        {"field": _FIELD, **{op: {"type": kind} for op in RANGE_OPS}},
        minProperties=2,
        # one bound per side: gt or gte, lt or lte
        **{"not": {"anyOf": [{"required": ["gt", "gte"]}, {"required": ["lt", "lte"]}]}},
    )


def _in_list(kind: str) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "maxItems": MAX_IN_VALUES, "items": {"type": kind}}


FILTER_NODE: dict[str, Any] = {
    "description": "one condition, or and/or/not over conditions (docs/retrieval-filters.md)",
    "anyOf": [
        _object(["and"], {"and": {"type": "array", "minItems": 1, "items": NODE_REF}}),
        _object(["or"], {"or": {"type": "array", "minItems": 1, "items": NODE_REF}}),
        _object(["not"], {"not": NODE_REF}),
        _object(["field", "eq"], {"field": _FIELD, "eq": _SCALAR}),
        _object(["field", "ne"], {"field": _FIELD, "ne": _SCALAR}),
        _object(
            ["field", "in"],
            {
                "field": _FIELD,
                "in": {"anyOf": [_in_list(k) for k in ("string", "number", "boolean")]},
            },
        ),
        _object(["field", "exists"], {"field": _FIELD, "exists": {"type": "boolean"}}),
        _range("string"),
        _range("number"),
    ],
}
FILTER: dict[str, Any] = {
    "description": "a metadata filter; {} matches everything",
    "anyOf": [{"type": "object", "maxProperties": 0}, NODE_REF],
}
COMPONENTS = {"Filter": FILTER, "FilterNode": FILTER_NODE}
