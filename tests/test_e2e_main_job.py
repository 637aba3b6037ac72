"""The main job across every installed lane: index documents, ask, get a cited answer."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from lanewise.core.gateway.app import create_app
from lanewise.core.server import serve_in_thread
from lanewise.core.settings import load_settings
from rich.console import Console

LANEWISE = str(Path(sys.executable).parent / "lanewise")

DOCS = {
    "lanes.md": "# Lanes\n\nEach lane is a separately deployable service with its own "
    "resource profile. The inference lane runs on GPUs; the ingest lane runs Celery workers.\n",
    "budgets.md": "# Budgets\n\nToken budgets are enforced at the gateway, like a query "
    "timeout in a database. A request over budget gets HTTP 429.\n",
}


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    return docs


@pytest.mark.slow
def test_lanewise_demo_answers_with_citations(docs_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANEWISE_")}
    env["LANEWISE_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    result = subprocess.run(
        [
            LANEWISE,
            "demo",
            "--docs",
            str(docs_dir),
            "--question",
            "Where are token budgets enforced?",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Q: Where are token budgets enforced?" in out
    assert "[1]" in out.split("A (", 1)[1]
    assert "budgets.md" in out  # the citation points at the document that answers
    assert "Traceback" not in out + result.stderr


@pytest.mark.slow
def test_streaming_rag_over_http_with_every_lane(docs_dir, tmp_path):
    settings = load_settings(None, data_dir=tmp_path / "data")
    app = create_app(settings)
    container = app.state["components"]
    pm = container.plugin_manager
    if container.pipeline().retriever is None or not container.pipeline().model_names():
        pytest.fail("the workspace installs the retrieval and inference lanes; both must load")
    quiet = Console(file=io.StringIO())
    pm.hook.lanewise_on_demo(components=container, docs_dir=docs_dir, console=quiet)
    model = container.pipeline().model_names()[0]
    body = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "What does the inference lane run on?"}],
        "lanewise": {"retrieval": {"k": 2}},
    }
    with (
        serve_in_thread(app) as base,
        httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=120) as r,
    ):
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert not [e for e in events if "error" in e]
    text = "".join(c["delta"].get("content", "") for e in events for c in e.get("choices", []))
    assert text.strip()
    citations = next(e["lanewise"]["citations"] for e in events if "lanewise" in e)
    assert {c["marker"] for c in citations} <= {"[1]", "[2]"}
    assert any("lanes.md" in c["source"] for c in citations)
    assert events[-1]["usage"]["completion_tokens"] > 0
