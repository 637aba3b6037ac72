"""``lanewise ingest``: in process, and against a gateway (``--url``), with its progress bar."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lanewise.core.cli import build_cli
from lanewise.core.gateway.app import create_app
from lanewise.core.server import serve_in_thread
from lanewise.ingest.testing import LANEWISE

CONFIG = (
    '[retrieval.embedder]\nkind = "noop"\ndimension = 8\n'
    '[ingest.chunker]\nkind = "tokens"\nsize = 12\noverlap = 3\ntokenizer = "words"\n'
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "lanewise.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + CONFIG)
    return path


def run(config: Path, cwd: Path, *args: str) -> Any:
    here = Path.cwd()
    os.chdir(cwd)  # document ids are paths relative to where the command runs
    try:
        return CliRunner().invoke(build_cli(), ["--config", str(config), "ingest", *args])
    finally:
        os.chdir(here)


def test_ingest_in_process_then_again_skips_and_reports_failures(
    config: Path, corpus: Path
) -> None:
    first = run(config, corpus, ".")
    assert first.exit_code == 1, first.output  # broken.pdf and photo.bin fail
    assert "5 ingested, 0 skipped" in first.output
    assert "broken.pdf: broken.pdf is not a readable PDF" in first.output
    assert "ingesting" in first.output  # the progress bar's label
    (corpus / "broken.pdf").unlink()
    (corpus / "photo.bin").unlink()
    second = run(config, corpus, "guide.md", "notes.txt")
    assert second.exit_code == 0, second.output
    assert "0 ingested, 2 skipped" in second.output


def test_ingest_against_a_gateway(lanewise_settings: Any, config: Path, corpus: Path) -> None:
    settings = lanewise_settings(
        retrieval={"embedder": {"kind": "noop", "dimension": 8}},
        ingest={"chunker": {"kind": "tokens", "size": 12, "overlap": 3, "tokenizer": "words"}},
    )
    with serve_in_thread(create_app(settings)) as base:
        result = run(config, corpus, "--url", base, "guide.md", "records.jsonl")
    assert result.exit_code == 0, result.output
    assert "2 ingested" in result.output


def test_doctor_checks_the_broker_in_celery_mode(tmp_path: Path, redis_server: Any) -> None:
    celery = tmp_path / "celery.toml"
    celery.write_text(
        f'data_dir = "{tmp_path / "data"}"\nredis_url = "{redis_server.url}"\n'
        '[ingest]\nqueue = "celery"\n' + CONFIG
    )

    def doctor(path: Path) -> subprocess.CompletedProcess[str]:
        # A process of its own: doctor leaves its components open when it exits.
        return subprocess.run(
            [LANEWISE, "--config", str(path), "doctor"],
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("LANEWISE_")},
        )

    up = doctor(celery)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "ingest-broker" in up.stdout
    redis_server.stop()
    down = doctor(celery)
    assert down.returncode == 1
    assert "ingest-broker" in down.stdout
    assert "unreachable" in down.stdout
