"""``/schema``: an OpenAPI document that says what the gateway really does.

Litestar's generated document describes errors as ``application/json`` with a
``status_code`` field, drops msgspec constraints (``gt``, ``min_length``) from
request bodies, and knows nothing of bodies a handler reads itself. This
module finishes it once, the first time it is served:

- request bodies come from the route's :class:`~lanewise.core.gateway.body.JsonBody`
  through msgspec's own JSON Schema, so every constraint the decoder enforces
  is in the document, and nothing it refuses is;
- 200 responses come from the Struct named in the route's ``opt["ok"]``
  (``opt["stream"]`` adds ``text/event-stream``);
- every error is ``application/problem+json`` (RFC 9457), with the statuses the
  route can answer: its ``opt["errors"]``, plus 400/413/415 for a body and
  401 when API keys are configured;
- ``securitySchemes`` (bearer, ``X-API-Key``) and per-operation ``security``
  when API keys are configured, none when the gateway is open;
- ``opt["describe"]`` (``describe(schemas, components)``) adds what only the
  running gateway knows: the models it serves, configured bounds such as
  ``retrieval.max_k``.

Routes of any lane use the same ``opt`` keys to be described the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import msgspec
from lanewise.core.gateway.body import JsonBody
from lanewise.core.settings import Settings
from litestar import Litestar, Request
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.routes import HTTPRoute

REF = "#/components/schemas/{name}"
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem; extension members name the limit or field involved.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "retry_after_s": {"type": "number"},
        "field": {"type": ["string", "null"]},
    },
}
_WHY = {
    400: "The body or a parameter is invalid; `field` names it.",
    401: "No valid API key was sent.",
    404: "The model does not exist.",
    408: "The request did not arrive in time.",
    413: "The body is larger than `gateway.max_body_bytes`.",
    415: "The body is not `application/json`, or is compressed.",
    429: "A rate limit or budget was hit; `Retry-After` says when to retry.",
    502: "The upstream failed.",
    503: "A backend or store is unavailable; retry later.",
    504: "The deadline (`gateway.request_timeout_s`) passed.",
}
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "an API key"},
    "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _WHY.get(status, HTTPStatus(status).phrase),
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(name="Problem")}}},
    }
    if status in (429, 503):
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return response


def _schemas(types: Iterable[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    types = list(types)
    return msgspec.json.schema_components(types, ref_template=REF)  # type: ignore[return-value]


def finish(document: dict[str, Any], app: Litestar, settings: Settings) -> dict[str, Any]:
    """A copy of Litestar's ``document`` made true to the routes of ``app``."""
    doc = copy.deepcopy(document)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    keyed = bool(settings.gateway.api_keys)
    if keyed:
        components["securitySchemes"] = SECURITY_SCHEMES
    operations: list[tuple[dict[str, Any], dict[str, Any], str]] = []
    body_types: list[Any] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                # path_format: the document's path ("{job_id}", not "{job_id:str}")
                op = doc.get("paths", {}).get(route.path_format, {}).get(method.lower())
                if op is None:
                    continue
                operations.append((op, handler.opt, route.path_format))
                body = handler.opt.get("body")
                if isinstance(body, JsonBody):
                    body_types.append(body.type)
                if handler.opt.get("ok") is not None:
                    body_types.append(handler.opt["ok"])
    refs, defs = _schemas(body_types)
    schemas.update(defs)
    ref_of = dict(zip(body_types, refs, strict=True))
    components = app.state.get("components")
    for op, opt, path in operations:
        _finish_operation(op, opt, path, ref_of, keyed=keyed)
        describe = opt.get("describe")
        if callable(describe):
            describe(schemas, components)
    return doc


def drop_components(schemas: dict[str, Any], names: Iterable[str]) -> None:
    """Remove components and every ``anyOf``/``oneOf`` branch that points at them."""
    gone = {REF.format(name=n) for n in names}
    for name in list(names):
        schemas.pop(name, None)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("anyOf", "oneOf"):
                if key in node:
                    node[key] = [b for b in node[key] if b.get("$ref") not in gone]
            mapping = node.get("discriminator", {}).get("mapping")
            if isinstance(mapping, dict):
                for tag in [t for t, ref in mapping.items() if ref in gone]:
                    del mapping[tag]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schemas)


def set_property(schemas: dict[str, Any], component: str, prop: str, **keywords: Any) -> None:
    """Add JSON Schema keywords to one property of a component (non-null branch)."""
    schema = schemas.get(component, {}).get("properties", {}).get(prop)
    if schema is None:
        return
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") != "null":
            branch.update(keywords)


def _finish_operation(
    op: dict[str, Any], opt: Any, path: str, ref_of: dict[Any, Any], *, keyed: bool
) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    # Litestar's own error entries ({status_code, detail} as application/json) are not what
    # the gateway sends.
    for status in [s for s in responses if s.isdigit() and int(s) >= 400]:
        del responses[status]
    errors = set(opt.get("errors", ()))
    body = opt.get("body")
    if isinstance(body, JsonBody):
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref_of[body.type]}},
        }
        errors |= {400, 413, 415}
    ok = opt.get("ok")
    if ok is not None:
        content: dict[str, Any] = {"application/json": {"schema": ref_of[ok]}}
        if opt.get("stream"):
            # Each event: a chunk as JSON in ``data``, the last one ``[DONE]``.
            content["text/event-stream"] = {
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {"data": {"type": "string"}},
                }
            }
        responses["200"] = {"description": HTTPStatus.OK.description, "content": content}
    if path.startswith("/v1/") and keyed:
        errors |= {401, 429}
        op["security"] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
    for status in sorted(errors):
        responses[str(status)] = problem_response(status)


class FinishedJsonRenderPlugin(JsonRenderPlugin):
    """Serves ``/schema/openapi.json`` finished by :func:`finish` (built once, then cached)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            self._rendered = self.render_json(
                request, finish(openapi_schema, request.app, self.settings)
            )
        return self._rendered
