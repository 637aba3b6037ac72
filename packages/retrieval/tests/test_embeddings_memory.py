"""Resident memory after large embedding requests stays bounded (issue 8, item 9).

onnxruntime's memory arena kept the buffers of the largest batch (32 inputs of
256 tokens: over a gigabyte) for the life of the process; the gateway stayed at
1.6 GB after big ``/v1/embeddings`` requests. Measured here on a real
``lanewise serve`` process from ``/proc``, not on the test process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from lanewise.core.server import free_port
from lanewise.core.testing.services import wait_for_port

LONG = "lanes keep every workload apart and tokens are counted per tenant " * 40


def rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def test_rss_after_long_inputs_stays_bounded(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANEWISE_")}
    env.update(LANEWISE_DATA_DIR=str(tmp_path / "data"), LANEWISE_PLUGINS="retrieval")
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "lanewise"), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, 120, "lanewise serve")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=300) as client:
            assert client.post(
                "/v1/embeddings", json={"model": "minilm", "input": "warm"}
            ).is_success
            before = rss_mib(proc.pid)
            body = {"model": "minilm", "input": [f"{i} {LONG}" for i in range(32)]}
            assert client.post("/v1/embeddings", json=body).is_success
            after = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    # With the arena the growth was ~1.2 GB; without it, tens of MB.
    assert after - before < 400, (before, after)
