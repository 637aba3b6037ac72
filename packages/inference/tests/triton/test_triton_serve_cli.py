"""``lanewise serve triton``: starts the bundled tritonserver, waits until ready, stops on TERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lanewise.core.server import free_port


def test_serve_triton_runs_until_sigterm(tmp_path: Path) -> None:
    lanewise = Path(sys.executable).parent / "lanewise"
    http, grpc, metrics = free_port(), free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(lanewise), "serve", "triton", "--http-port", str(http), "--grpc-port",
                str(grpc), "--metrics-port", str(metrics), "--token-delay-ms", "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "triton ready" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/ensemble/ready") as r:
            assert r.status == 200
        assert f"127.0.0.1:{grpc}" in log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/live", timeout=1)
    except OSError:
        pass
    else:
        raise AssertionError("tritonserver still answers after lanewise serve triton stopped")
