"""``/metrics`` of ``lanewise serve --workers 2`` adds up both worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from lanewise.core.server import free_port
from lanewise.core.testing.services import wait_for_port
from lanewise.observe.metrics import METRIC_NAMES
from lanewise.observe.state import STATE
from prometheus_client.parser import text_string_to_metric_families

LANEWISE = str(Path(sys.executable).parent / "lanewise")
BODY = {"model": "m", "messages": [{"role": "user", "content": "The sky is blue. Grass is green."}]}


def sample_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_add_up_across_two_workers(tmp_path):
    port = free_port()
    log_file = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "LANEWISE_PLUGINS": "inference,observe",
        "LANEWISE_MODELS": json.dumps({"m": {"kind": "extractive", "scorer": "lexical"}}),
        "LANEWISE_DATA_DIR": str(tmp_path / "data"),
        "LANEWISE_OBSERVE__LOG_FORMAT": "json",
        "LANEWISE_OBSERVE__LOG_FILE": str(log_file),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [LANEWISE, "serve", "--workers", "2", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, proc, 90, "the gateway")
        sent, pids = 0, set()
        # A new connection per request lets the kernel spread them over both workers.
        while sent < 20 or (len(pids) < 2 and sent < 400):
            r = httpx.post(f"{base}/v1/chat/completions", json=BODY, timeout=30)
            assert r.status_code == 200
            sent += 1
            if sent % 10 == 0:
                pids = summary_pids(log_file)
        # Summary lines are written by a background thread: wait until every request's is in.
        deadline = time.monotonic() + 10
        while len(summary_lines(log_file)) < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = summary_pids(log_file)
        assert len(pids) == 2, f"only workers {pids} served {sent} requests"
        # Each worker folds its batched updates into the shared files about once a second.
        ok = dict(route="/v1/chat/completions", outcome="ok")
        while time.monotonic() < deadline + 5:
            text = httpx.get(f"{base}/metrics", timeout=10).text
            if sample_sum(text, "lanewise_requests_total", **ok) == sent:
                break
            time.sleep(0.1)
        scrapes = [httpx.get(f"{base}/metrics", timeout=10).text for _ in range(6)]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    for text in scrapes:  # whichever worker answers the scrape, it reports both
        ok = dict(route="/v1/chat/completions", outcome="ok")
        assert sample_sum(text, "lanewise_requests_total", **ok) == sent
        assert sample_sum(text, "lanewise_request_duration_seconds_count", **ok) == sent
        tokens_out = sample_sum(text, "lanewise_tokens_total", direction="output", model="m")
        assert tokens_out > 0
        assert sample_sum(text, "lanewise_stage_duration_seconds_count", stage="generate") == sent
    per_worker = summary_tokens(log_file)
    assert sum(per_worker.values()) == tokens_out
    assert "Traceback" not in err


def summary_lines(path: Path) -> list[dict]:
    return [
        line
        for line in (json.loads(raw) for raw in path.read_text().splitlines() if raw.strip())
        if line.get("event") == "request.summary"
    ]


def summary_pids(path: Path) -> set[int]:
    return {line["pid"] for line in summary_lines(path)} if path.exists() else set()


def summary_tokens(path: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for line in summary_lines(path):
        out[line["pid"]] = out.get(line["pid"], 0) + line["tokens_out"]
    return out


def test_every_exported_name_is_listed():
    """docs/observe.md lists METRIC_NAMES; the exposition must not export more than that."""
    from lanewise.observe import metrics

    text = metrics.exposition()[0].decode()
    exported = {
        family.name
        for family in text_string_to_metric_families(text)
        if family.name.startswith("lanewise_")
    }
    listed = {n.removesuffix("_total") for n in METRIC_NAMES}
    # Other lanes' state (lanewise_collect_state) is named by those lanes: see test_lane_state.
    reported = {n.removesuffix("_total") for n in STATE.names()}
    assert exported - reported == listed
