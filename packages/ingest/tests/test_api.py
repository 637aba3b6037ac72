"""``POST /v1/ingest`` and ``GET /v1/ingest/jobs/{id}`` on a real gateway (uvicorn, HTTP)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from lanewise.core.auth import hash_key
from lanewise.core.gateway.app import create_app
from lanewise.core.server import serve_in_thread

from .conftest import CORPUS

KEYS = [
    {"sha256": hash_key("sk-acme"), "tenant": "acme"},
    {"sha256": hash_key("sk-globex"), "tenant": "globex"},
]
ACME = {"authorization": "Bearer sk-acme"}
GLOBEX = {"authorization": "Bearer sk-globex"}


@contextmanager
def gateway(lanewise_settings: Any, **ingest: Any) -> Iterator[httpx.Client]:
    settings = lanewise_settings(
        gateway={"api_keys": KEYS},
        retrieval={"embedder": {"kind": "noop", "dimension": 8}},
        ingest={
            "chunker": {"kind": "tokens", "size": 12, "overlap": 3, "tokenizer": "words"},
            **ingest,
        },
    )
    with serve_in_thread(create_app(settings)) as base, httpx.Client(base_url=base) as client:
        yield client


def wait_job(client: httpx.Client, job: str) -> dict[str, Any]:
    for _ in range(600):
        got = client.get(f"/v1/ingest/jobs/{job}", headers=ACME)
        assert got.status_code == 200, got.text
        if got.json()["status"] == "completed":
            return got.json()
        time.sleep(0.05)
    raise AssertionError(got.json())


def test_upload_then_follow_the_job_as_its_tenant_only(
    lanewise_settings: Any, tmp_path: Path
) -> None:
    with gateway(lanewise_settings) as client:
        files = [
            ("files", ("guide.md", CORPUS["guide.md"].encode())),
            ("files", ("scans/broken.pdf", CORPUS["broken.pdf"])),
            ("files", ("../../etc/notes.txt", CORPUS["notes.txt"].encode())),
        ]
        posted = client.post("/v1/ingest", files=files, headers=ACME)
        assert posted.status_code == 202, posted.text
        assert posted.json()["items"] == 3
        job = wait_job(client, posted.json()["id"])
        assert job["totals"]["items"] == 3
        assert job["totals"]["done"] == 2
        assert job["totals"]["failed"] == 1
        assert job["totals"]["chunks_added"] > 0
        assert job["progress"] == 1.0
        assert job["failures"][0]["name"] == "scans/broken.pdf"
        assert "not a readable PDF" in job["failures"][0]["reason"]
        items = client.get(f"/v1/ingest/jobs/{job['id']}?items=true", headers=ACME).json()["items"]
        assert [i["name"] for i in items] == ["guide.md", "scans/broken.pdf", "etc/notes.txt"]
        other = client.get(f"/v1/ingest/jobs/{job['id']}", headers=GLOBEX)
        assert other.status_code == 404
        assert other.headers["content-type"].startswith("application/problem+json")
        assert client.get(f"/v1/ingest/jobs/{job['id']}").status_code == 401
        # The uploads were spooled for the job and are gone once it ended.
        for _ in range(100):
            if not list((tmp_path / "data" / "ingest" / "uploads").iterdir()):
                break
            time.sleep(0.05)
        assert not list((tmp_path / "data" / "ingest" / "uploads").iterdir())


def test_server_paths_only_inside_the_allowed_root(
    lanewise_settings: Any, corpus: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not for indexing")
    os.symlink(outside, corpus / "link.txt")
    with gateway(lanewise_settings, allowed_root=str(corpus)) as client:
        ok = client.post("/v1/ingest", json={"paths": ["guide.md", "notes.txt"]}, headers=ACME)
        assert ok.status_code == 202, ok.text
        assert wait_job(client, ok.json()["id"])["totals"]["done"] == 2
        for bad in ["../secret.txt", str(outside), "link.txt"]:
            got = client.post("/v1/ingest", json={"paths": [bad]}, headers=ACME)
            assert got.status_code == 403, (bad, got.text)
            problem = got.json()
            assert problem["type"].endswith("/forbidden")
            assert "allowed_root" in problem["detail"]
    with gateway(lanewise_settings) as client:
        got = client.post("/v1/ingest", json={"paths": ["guide.md"]}, headers=ACME)
        assert got.status_code == 403
        assert "upload the files" in got.json()["detail"]


def test_an_oversized_upload_gets_413_before_its_body_is_sent(lanewise_settings: Any) -> None:
    with gateway(lanewise_settings, max_upload_bytes=64 * 1024) as client:
        url = urlparse(str(client.base_url))
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/ingest HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-acme\r\n"
                b"content-type: multipart/form-data; boundary=b\r\n"
                b"content-length: 104857600\r\n\r\n--b\r\n"
            )
            # Only the headers and 5 bytes of a declared 100 MB were sent: the answer comes now.
            head = sock.recv(65536).decode(errors="replace")
        assert head.startswith("HTTP/1.1 413"), head
        assert "max_upload_bytes" in head


def test_backpressure_429_with_retry_after(
    lanewise_settings: Any, redis_server: Any, corpus: Path
) -> None:
    # Celery mode with no worker running: queued tasks stay queued, so the depth is exact.
    with gateway(
        lanewise_settings,
        queue="celery",
        broker_url=redis_server.url,
        allowed_root=str(corpus),
        max_queue_depth=2,
    ) as client:
        body = {"paths": ["guide.md", "notes.txt"]}
        assert client.post("/v1/ingest", json=body, headers=ACME).status_code == 202
        refused = client.post("/v1/ingest", json=body, headers=ACME)
        assert refused.status_code == 429
        assert float(refused.headers["retry-after"]) > 0
        problem = refused.json()
        assert problem["limit"] == "ingest.max_queue_depth"
        assert problem["queue_depth"] == 2


def test_the_job_route_is_in_the_schema_and_answers_as_it_says(lanewise_settings: Any) -> None:
    with gateway(lanewise_settings) as client:
        doc = client.get("/schema/openapi.json").json()
        op = doc["paths"]["/v1/ingest/jobs/{job_id}"]["get"]
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        job_out = doc["components"]["schemas"][ok["$ref"].rsplit("/", 1)[1]]
        assert {"id", "status", "totals", "progress", "failures"} <= set(job_out["required"])
        assert "application/problem+json" in op["responses"]["404"]["content"]
        assert op["security"]  # keyed gateway: the route says it needs a key
        assert "/v1/ingest" not in doc["paths"]  # its body depends on the server's files
        # What the document says is what the route answers.
        job = client.post(
            "/v1/ingest", files=[("files", ("a.md", b"# A\n\nalpha beta"))], headers=ACME
        ).json()["id"]
        view = wait_job(client, job)
        assert set(job_out["required"]) <= set(view)
        missing = client.get("/v1/ingest/jobs/nope", headers=ACME)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
