"""RFC 9457 problem+json for every error the gateway returns.

Internal errors never leak a stack trace or exception text: the client gets
the request id to quote, the log gets the traceback.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import msgspec
from lanewise.core.errors import PROBLEM_BASE, LanewiseError
from lanewise.core.gateway.middleware import request_id_from
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

log = logging.getLogger("lanewise.gateway")
PROBLEM_MEDIA_TYPE = "application/problem+json"

_HTTP_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "limit-exceeded",
    503: "unavailable",
}


def request_id_of(request: Request[Any, Any, Any]) -> str:
    """The request's id; one is minted for requests no route middleware saw (404, 405)."""
    state = request.scope.setdefault("state", {})
    rid = state.get("request_id")
    if not rid:
        rid = state["request_id"] = request_id_from(request.scope["headers"]).decode()
    return str(rid)


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    type_uri: str,
    title: str,
    detail: str,
    retry_after_s: float | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response[bytes]:
    body: dict[str, Any] = {
        "type": type_uri,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    rid = request_id_of(request)
    body["request_id"] = rid
    headers = {**(headers or {}), "x-request-id": rid}
    if retry_after_s is not None:
        body["retry_after_s"] = retry_after_s
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    body.update(extensions)
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


# RFC 9110 §11.6.1: a 401 names the scheme that would work.
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lanewise"'}


def lanewise_error_handler(request: Request[Any, Any, Any], exc: LanewiseError) -> Response[bytes]:
    if exc.status >= 500:
        log.warning("request failed: %s", exc.detail, extra={"request_id": request_id_of(request)})
    return problem_response(
        request,
        status=exc.status,
        type_uri=exc.type_uri,
        title=exc.title,
        detail=exc.detail,
        retry_after_s=exc.retry_after_s,
        headers=_CHALLENGE if exc.status == 401 else None,
        **exc.extensions,
    )


_MISSING_FIELD = re.compile(r"Object missing required field `([^`]+)`")


def _validation_detail(exc: ValidationException) -> tuple[str, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict):
            field, message = item.get("key") or item.get("source"), item.get("message")
            missing = _MISSING_FIELD.match(str(message))
            if missing:  # name the missing field itself, not its parent ("data" at the top)
                name = missing.group(1)
                field = name if field in {"data", None} else f"{field}.{name}"
            errors.append({"field": field, "message": message})
    if errors == [{"field": "data", "message": "'data'"}]:  # Litestar's way of saying "no body"
        return "the request body is missing or empty; send a JSON object", errors
    if errors:
        named = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return f"the request body is invalid: {named}", errors
    return f"the request is invalid: {exc.detail}", errors


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    slug = _HTTP_SLUGS.get(status, "http-error")
    extensions: dict[str, Any] = {}
    if "JSON is malformed" in str(exc.detail):
        slug, detail = "malformed-json", f"the request body is not valid JSON: {exc.detail}"
    elif isinstance(exc, ValidationException):
        detail, errors = _validation_detail(exc)
        slug = "invalid-request"
        extensions["errors"] = errors
    elif status == 404:
        detail = f"no route matches {request.method} {request.url.path}; see /schema for the API"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    elif status == 413:
        detail = "the request body exceeds gateway.max_body_bytes; send a smaller body"
    else:
        detail = str(exc.detail)
    retry_after = None
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    if "retry-after" in headers:
        retry_after = float(headers.pop("retry-after"))
    # 405 carries Allow (RFC 9110 §15.5.6); Litestar puts it on the exception.
    kept = {"Allow": headers["allow"]} if "allow" in headers else None
    return problem_response(
        request,
        status=status,
        type_uri=PROBLEM_BASE + slug,
        title="Malformed JSON" if slug == "malformed-json" else _title(status),
        detail=detail,
        retry_after_s=retry_after,
        headers=kept,
        **extensions,
    )


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, UnicodeDecodeError) and _raised_by_body_decoding(exc):
        # Routes that still let Litestar parse the body: invalid UTF-8 is the client's.
        return problem_response(
            request,
            status=400,
            type_uri=PROBLEM_BASE + "malformed-json",
            title="Malformed JSON",
            detail=f"the request body is not valid UTF-8 (byte {exc.start}); encode text as UTF-8",
        )
    if isinstance(exc, RecursionError) and "deserializing" in str(exc):
        # msgspec refuses absurdly nested JSON this way: the client's fault, not ours.
        return problem_response(
            request,
            status=400,
            type_uri=PROBLEM_BASE + "malformed-json",
            title="Bad Request",
            detail="the request body nests JSON too deeply; flatten it",
        )
    log.error(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"request_id": request_id_of(request)},
    )
    return problem_response(
        request,
        status=500,
        type_uri=PROBLEM_BASE + "internal",
        title="Internal error",
        detail="the gateway failed to handle this request; quote the request_id when reporting it",
    )


def _raised_by_body_decoding(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "litestar/serialization" in tb.tb_frame.f_code.co_filename


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    LanewiseError: lanewise_error_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
