"""`lanewise serve --workers N` refuses components that only one process may own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LANEWISE = str(Path(sys.executable).parent / "lanewise")


def run_serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANEWISE_")}
    env["LANEWISE_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [LANEWISE, "serve", "--port", "0", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_two_workers_with_the_embedded_store_fail_fast_with_advice(tmp_path):
    result = run_serve(tmp_path, "--workers", "2")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "EmbeddedStore can be open in one process only" in out
    assert "--workers 1" in out
    assert "pgvector" in out
    assert "Traceback" not in out
