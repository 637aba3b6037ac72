"""Bad request bodies on the OpenAI routes (issue 8, items 1, 5, 7, 9): never a 500.

Each case goes through a real uvicorn server and checks the problem document:
its status, its stable type, and the field or header it names.
"""

from __future__ import annotations

import logging

import httpx
import pytest

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}
ROUTES = ["/v1/chat/completions", "/v1/completions"]


def post(base: str, path: str, content: bytes, headers: dict[str, str] | None = None):
    return httpx.post(f"{base}{path}", content=content, headers=headers or JSON, timeout=30)


def problem_of(r: httpx.Response, status: int, slug: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"] == f"https://lanewise.dev/problems/{slug}"
    return body


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("bad", [b"\xff", b"\xed\xa0\x80", b"\xe9"])
def test_invalid_utf8_is_400_with_at_most_one_log_line(gateway, caplog, path, bad):
    body = b'{"model":"echo","prompt":"' + bad + b'","messages":[{"role":"user","content":"'
    body += bad + b'"}]}'
    with caplog.at_level(logging.DEBUG), gateway() as base:
        r = post(base, path, body)
    assert "UTF-8" in problem_of(r, 400, "malformed-json")["detail"]
    gateway_lines = [rec for rec in caplog.records if rec.name.startswith(("lanewise", "litestar"))]
    assert len(gateway_lines) <= 1
    assert not any(rec.exc_info for rec in caplog.records)


@pytest.mark.parametrize("path", ROUTES)
def test_lone_surrogate_is_one_problem_type_on_every_route(gateway, path):
    with gateway() as base:
        r = post(base, path, b'{"model":"echo","prompt":"\\ud800","messages":[]}')
    problem_of(r, 400, "malformed-json")


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json; charset=latin-1",
    ],
)
def test_non_json_content_type_is_415(gateway, chat, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            content=httpx.Request("POST", "/", json=chat()).content,
            headers=headers,
        )
    body = problem_of(r, 415, "unsupported-media-type")
    assert body["header"] == "content-type"


@pytest.mark.parametrize("encoding", ["br", "gzip", "deflate"])
def test_compressed_body_is_415(gateway, chat, encoding):
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json=chat(),
            headers={"content-encoding": encoding},
        )
    assert problem_of(r, 415, "unsupported-media-type")["header"] == "content-encoding"


def test_json_with_utf8_charset_and_identity_encoding_is_served(gateway, chat):
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json=chat(),
            headers={
                "content-type": "application/json; charset=utf-8",
                "content-encoding": "identity",
            },
        )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"max_tokens": "10"}, "max_tokens"),
        ({"stream": "true"}, "stream"),
        ({"temperature": "0.5"}, "temperature"),
        ({"n": True}, "n"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ],
)
def test_wrong_types_and_missing_fields_are_400_naming_the_field(gateway, chat, extra, field):
    with gateway() as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=chat(**extra))
    body = problem_of(r, 400, "invalid-request")
    assert body["field"].startswith(field), body


def test_non_text_content_parts_are_refused(gateway):
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
        ],
    }
    with gateway() as base:
        r = httpx.post(f"{base}/v1/chat/completions", json={"model": "echo", "messages": [message]})
    body = problem_of(r, 400, "invalid-request")
    assert body["field"] == "messages[0].content[1].type"
    assert "text only" in body["detail"]


def test_text_parts_are_joined(gateway):
    parts = [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": parts}]},
        )
    assert r.json()["choices"][0]["message"]["content"] == "hello world"


def test_completions_refuses_coerced_numbers(gateway):
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/completions", json={"model": "echo", "prompt": "hi", "max_tokens": "5"}
        )
    assert problem_of(r, 400, "invalid-request")["field"] == "max_tokens"


def test_405_carries_allow(gateway):
    with gateway() as base:
        r = httpx.delete(f"{base}/v1/chat/completions")
    problem_of(r, 405, "method-not-allowed")
    assert "POST" in r.headers["allow"]


def test_non_blank_pattern_agrees_with_str_strip_on_every_character():
    import re

    from lanewise.core.gateway.body import NON_BLANK

    pattern = re.compile(NON_BLANK)
    disagree = [
        hex(c)
        for c in range(0x110000)
        if not 0xD800 <= c <= 0xDFFF and bool(pattern.search(chr(c))) != bool(chr(c).strip())
    ]
    assert disagree == []
