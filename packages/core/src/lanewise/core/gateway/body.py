"""Strict JSON request bodies: the one way a ``/v1`` route reads its body.

Litestar's own body parsing decodes to a dict and then converts it leniently
(``"10"`` becomes ``10``, ``"true"`` becomes ``True``) and lets invalid UTF-8
escape as a 500. :class:`JsonBody` decodes the raw bytes straight into a
msgspec Struct in strict mode, the way the reference OpenAI API checks types,
which is also one pass instead of two. Each failure is a problem with its own
stable type:

- a ``Content-Type`` other than ``application/json``, or any
  ``Content-Encoding`` other than ``identity``: 415 ``unsupported-media-type``
  (a cross-origin "simple" POST — ``text/plain``, a form — never reaches a model);
- bytes that are not UTF-8 or not JSON: 400 ``malformed-json``;
- a wrong type, a missing required field, a broken constraint: 400
  ``invalid-request`` naming the field.

The OpenAPI document describes the same Struct (see :mod:`lanewise.core.gateway.openapi`),
so what the schema promises is exactly what the decoder accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

import msgspec
from lanewise.core.errors import InvalidRequest, MalformedJson, UnsupportedMediaType
from litestar import Request

T = TypeVar("T")

JSON_MEDIA_TYPE = b"application/json"
NON_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""A ``pattern`` for "has a character ``str.strip`` keeps": spelled out, because ``\\S``
means different sets in Python and in the ECMA regexes of JSON Schema tools."""
_PATH = re.compile(r" - at `\$(.*)`$")


def check_content_headers(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Refuse bodies that are not plain JSON; one pass over the raw header list."""
    content_type = b""
    for name, value in headers:
        if name == b"content-type":
            content_type = value
        elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise UnsupportedMediaType(
                f"Content-Encoding {value.decode('latin-1')!r} is not accepted; "
                "send the body uncompressed",
                header="content-encoding",
                accepted=["identity"],
            )
    media, _, params = content_type.partition(b";")
    if media.strip().lower() != JSON_MEDIA_TYPE:
        got = content_type.decode("latin-1") or "none"
        raise UnsupportedMediaType(
            f"the body must be JSON: send 'Content-Type: application/json' (got {got})",
            header="content-type",
            accepted=["application/json"],
        )
    if params and b"charset" in params.lower():
        charset = params.lower().partition(b"charset=")[2].split(b";")[0].strip(b" \"'")
        if charset not in (b"utf-8", b"utf8"):
            raise UnsupportedMediaType(
                f"JSON bodies must be UTF-8 (got charset={charset.decode('latin-1')})",
                header="content-type",
                accepted=["application/json; charset=utf-8"],
            )


def field_of(message: str) -> str | None:
    """``"Expected `int`, got `str` - at `$.messages[0].role`"`` → ``messages[0].role``."""
    match = _PATH.search(message)
    if match is None:
        return None
    return match.group(1).lstrip(".") or None


def decode_strict(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    """Decode ``raw`` with ``decoder``; every failure becomes a 400 problem naming its cause."""
    if not raw:
        raise InvalidRequest("the request body is missing or empty; send a JSON object")
    try:
        return decoder.decode(raw)
    except UnicodeDecodeError as exc:
        raise MalformedJson(
            f"the request body is not valid UTF-8 (byte {exc.start}); encode text as UTF-8"
        ) from None
    except msgspec.ValidationError as exc:
        if "got `float`" in str(exc):
            # JSON Schema counts 10.0 as an integer; so does the OpenAI API. Only this
            # error path pays for the second decode.
            return decode_strict_integral(decoder, raw, exc)
        raise invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise MalformedJson(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedJson("the request body nests JSON too deeply; flatten it") from None


def decode_strict_integral(
    decoder: msgspec.json.Decoder[T], raw: bytes, first: msgspec.ValidationError
) -> T:
    def integral(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            return int(value)
        if isinstance(value, list):
            return [integral(v) for v in value]
        if isinstance(value, dict):
            return {k: integral(v) for k, v in value.items()}
        return value

    try:
        converted: T = msgspec.convert(integral(msgspec.json.decode(raw)), decoder.type)
        return converted
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    except RecursionError:
        raise invalid(first) from None


def invalid(exc: msgspec.ValidationError) -> InvalidRequest:
    """The 400 for a type or constraint error, naming the field."""
    message = str(exc)
    field = field_of(message)
    missing = re.match(r"Object missing required field `([^`]+)`", message)
    if missing:
        field = f"{field}.{missing.group(1)}" if field else missing.group(1)
    text = message.split(" - at ", 1)[0]
    where = f"{field}: " if field else ""
    return InvalidRequest(
        f"the request body is invalid: {where}{text}",
        field=field,
        errors=[{"field": field, "message": text}],
    )


class JsonBody(Generic[T]):
    """A route's body type: ``data = await CHAT_BODY.read(request)``."""

    def __init__(self, type_: type[T]) -> None:
        self.type = type_
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(type_)

    async def read(self, request: Request[Any, Any, Any]) -> T:
        check_content_headers(request.scope["headers"])
        return decode_strict(self._decoder, await request.body())
