"""Schemathesis, every check, against a live ``lanewise serve``: open, and with API keys.

The gateway's ``/schema`` must be the truth: no input may get a 5xx, every
response must match its documented status, media type, headers and schema,
schema-valid requests must be accepted and schema-invalid ones refused, and
(keyed) requests without a key must get 401. The generator's seed is fixed so
CI is repeatable; ``LANEWISE_FUZZ_SEED`` and ``LANEWISE_FUZZ_EXAMPLES`` widen a
local run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from lanewise.core.auth import hash_key
from lanewise.core.server import free_port
from lanewise.core.testing.services import wait_for_port

BIN = Path(sys.executable).parent
KEY = "sk-fuzz-tenant"


def serve(tmp_path: Path, keyed: bool) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANEWISE_")}
    env["LANEWISE_DATA_DIR"] = str(tmp_path / "data")
    if keyed:
        # The fuzzer's unauthenticated probes must not lock its own address out.
        env["LANEWISE_GATEWAY__AUTH_FAILURE_LIMIT"] = "1000000"
        env["LANEWISE_GATEWAY__API_KEYS"] = json.dumps(
            [{"sha256": hash_key(KEY), "tenant": "fuzz"}]
        )
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "lanewise"), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_port(port, proc, 120, "lanewise serve")
    return proc, f"http://127.0.0.1:{port}"


@pytest.mark.slow
@pytest.mark.parametrize("keyed", [False, True], ids=["open", "keyed"])
def test_schemathesis_finds_nothing(tmp_path, keyed):
    proc, base = serve(tmp_path, keyed)
    # A real job for GET /v1/ingest/jobs/{job_id}: a made-up id can only ever get 404.
    headers = {"Authorization": f"Bearer {KEY}"} if keyed else {}
    upload = [("files", ("a.md", b"# A\n\nalpha beta"))]
    job = httpx.post(f"{base}/v1/ingest", files=upload, headers=headers, timeout=120)
    assert job.status_code == 202, job.text
    (tmp_path / "schemathesis.toml").write_text(
        '[[operations]]\ninclude-path = "/v1/ingest/jobs/{job_id}"\n'
        f'parameters = {{ job_id = "{job.json()["id"]}" }}\n'
    )
    command = [
        str(BIN / "st"),
        "run",
        f"{base}/schema/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        os.environ.get("LANEWISE_FUZZ_EXAMPLES", "40"),
        "--seed",
        os.environ.get("LANEWISE_FUZZ_SEED", "8"),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-color",
    ]
    if keyed:
        command += ["--header", f"Authorization: Bearer {KEY}"]
    try:
        run = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
        )
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "No issues found" in run.stdout
    assert "Traceback" not in err, err[-4000:]
    assert "unhandled error" not in err
