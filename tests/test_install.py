"""Each package installs alone: core + observe into an empty venv, nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def find_uv() -> str | None:
    candidates = [
        os.environ.get("UV"),
        shutil.which("uv"),
        str(ROOT / ".tools/uv/bin/uv"),
        "/tmp/uvboot/bin/uv",  # where this project's sessions bootstrap uv
    ]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def make_venv(venv: Path, *packages: Path) -> None:
    uv = find_uv()
    env = {
        k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    }
    if uv is not None:
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env
        )
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(venv / "bin/python"), *map(str, packages)],
            check=True,
            env=env,
            timeout=600,
        )
    else:  # no uv: the standard library's venv and pip do the same, slower
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
        subprocess.run(
            [str(venv / "bin/pip"), "install", "-q", *map(str, packages)],
            check=True,
            env=env,
            timeout=900,
        )


@pytest.mark.slow
def test_core_and_observe_install_alone(tmp_path):
    venv = tmp_path / "venv"
    make_venv(venv, ROOT / "packages/core", ROOT / "packages/observe")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANEWISE_")}
    version = subprocess.run(
        [str(venv / "bin/lanewise"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    names = [line.split()[0] for line in version.stdout.splitlines()]
    assert names == ["lanewise-core", "lanewise-observe"]
    # The other lanes are really absent, and the CLI still works without them.
    probe = subprocess.run(
        [str(venv / "bin/python"), "-c", "import lanewise.retrieval"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert probe.returncode != 0
    assert "No module named 'lanewise.retrieval'" in probe.stderr
    doctor = subprocess.run(
        [str(venv / "bin/lanewise"), "doctor"],
        capture_output=True,
        text=True,
        env={**env, "LANEWISE_DATA_DIR": str(tmp_path / "data")},
        cwd=tmp_path,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "plugins loaded: core, observe" in doctor.stdout
