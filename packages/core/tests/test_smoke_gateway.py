"""End-to-end smoke of the spine: real uvicorn, real HTTP."""

from __future__ import annotations

import httpx
from lanewise.core.gateway.app import create_app
from lanewise.core.server import serve_in_thread


def test_bad_json_is_problem_json_not_500(lanewise_settings):
    app = create_app(lanewise_settings())
    with serve_in_thread(app) as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            content=b"{bad",
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].endswith("/malformed-json")
    assert "Traceback" not in r.text
    assert body["request_id"] == r.headers["x-request-id"]
