"""The ASGI scope of one ``POST /v1/chat/completions``, for benches that drive the app directly.

Copy it per request (``dict(CHAT_SCOPE, state={})``): the app writes into a scope.
"""

from __future__ import annotations

from typing import Any

CHAT_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/chat/completions",
    "raw_path": b"/v1/chat/completions",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"content-type", b"application/json"), (b"host", b"bench")],
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 80),
}
