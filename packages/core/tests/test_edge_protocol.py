"""Protocol limits of ``lanewise serve`` (issue 8, item 3 and 4), against a real subprocess.

Each probe speaks raw HTTP/1.1 over a socket, as a careless or hostile client would:
oversized and too many headers, headers and bodies that never finish, idle sockets,
more connections than allowed, and a client that writes a whole oversized body
before it reads the answer.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lanewise.core.server import free_port
from lanewise.core.testing.services import wait_for_port

LIMITS = {
    "LANEWISE_GATEWAY__HEADER_TIMEOUT_S": "1",
    "LANEWISE_GATEWAY__BODY_TIMEOUT_S": "1",
    "LANEWISE_GATEWAY__KEEPALIVE_TIMEOUT_S": "1",
    "LANEWISE_GATEWAY__MAX_CONNECTIONS": "8",
    "LANEWISE_GATEWAY__MAX_HEADER_BYTES": "8192",
    "LANEWISE_GATEWAY__MAX_HEADERS": "50",
}


@pytest.fixture(scope="module")
def server(slowplug_env: dict[str, str], tmp_path_factory) -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "lanewise"), "serve", "--port", str(port)],
        env={**slowplug_env, **LIMITS},
        cwd=tmp_path_factory.mktemp("serve"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, proc, 90, "lanewise serve")
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err


def exchange(server: tuple[str, int], payload: bytes, timeout: float = 10) -> bytes:
    """Send ``payload``, then read until the server closes (or ``timeout``)."""
    with socket.create_connection(server, timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                chunks.append(b"<still open>")
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def problem(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    assert headers["content-type"] == "application/problem+json", raw[:300]
    return status, headers, json.loads(body)


def test_oversized_header_is_431(server):
    raw = exchange(
        server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    )
    status, headers, body = problem(raw)
    assert status == 431
    assert body["type"].endswith("/headers-too-large")
    assert headers["connection"] == "close"


def test_unfinished_huge_header_is_refused_before_it_ends(server):
    # Never finishes the header: the server answers once the limit is passed.
    raw = exchange(server, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 200_000)
    assert problem(raw)[0] == 431


def test_too_many_headers_is_431(server):
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(60))
    status, _, body = problem(exchange(server, b"GET /healthz HTTP/1.1\r\n" + fields + b"\r\n"))
    assert status == 431
    assert "50" in body["detail"]


def test_headers_that_never_finish_time_out_with_408(server):
    status, _, body = problem(exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow"))
    assert status == 408
    assert "header_timeout_s" in body["detail"]


def test_an_idle_connection_is_closed(server):
    assert exchange(server, b"") == b""  # closed by the server, not by our timeout


def test_a_body_that_stalls_times_out_with_408(server):
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 500\r\n\r\n{"
    )
    status, _, body = problem(exchange(server, head))
    assert status == 408
    assert "body" in body["detail"]


def test_idle_keepalive_connection_is_closed(server):
    raw = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    assert not raw.endswith(b"<still open>")


def test_garbage_is_a_problem_not_text(server):
    status, _, body = problem(exchange(server, b"NOT HTTP AT ALL\r\n\r\n"))
    assert status == 400
    assert body["type"].endswith("/bad-request")


def test_connections_beyond_the_cap_get_503(server):
    held = [socket.create_connection(server) for _ in range(10)]
    try:
        r = httpx.get(f"http://{server[0]}:{server[1]}/healthz", timeout=10)
    finally:
        for sock in held:
            sock.close()
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "1"


@pytest.mark.parametrize("size", [2_000_000, 8_000_000])
def test_413_reaches_a_client_that_writes_the_whole_body_first(server, size):
    # urllib writes the entire body before reading; on main it saw ECONNRESET above ~4 MB.
    body = b'{"model":"slow","messages":[{"role":"user","content":"' + b"a" * size + b'"}]}'
    request = urllib.request.Request(
        f"http://{server[0]}:{server[1]}/v1/chat/completions",
        data=body,
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 413
    assert info.value.headers["content-type"] == "application/problem+json"
    assert json.loads(info.value.read())["type"].endswith("/payload-too-large")
