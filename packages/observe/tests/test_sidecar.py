"""The telemetry sidecar of ``lanewise serve``: a real gateway process and its real child.

Summary lines, metrics, usage rows and spans come from the child; the gateway
only encodes records. Killing the child costs telemetry (counted), never a
request; the gateway starts another. Shutdown (SIGTERM) writes everything out.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from lanewise.core.auth import hash_key
from lanewise.core.gateway.app import create_app
from lanewise.core.server import free_port, serve_in_thread
from lanewise.core.testing import poll
from lanewise.core.testing.services import wait_for_port
from lanewise.observe.plugin import ObservePlugin

from .test_metrics_workers import sample_sum

LANEWISE = str(Path(sys.executable).parent / "lanewise")
KEY = "sidecar-key"
AUTH = {"authorization": f"Bearer {KEY}"}
BODY = {"model": "m", "messages": [{"role": "user", "content": "The sky is blue. Grass is green."}]}
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"
OK = {"route": "/v1/chat/completions", "outcome": "ok"}


class Gateway:
    def __init__(self, proc: subprocess.Popen[str], port: int, tmp: Path) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.log_file = tmp / "gateway.log"
        self.spans_file = tmp / "spans.jsonl"
        self.usage_db = tmp / "data" / "usage.sqlite3"
        self.sent: list[str] = []

    def chat(self, headers: dict[str, str] | None = None) -> str:
        r = httpx.post(
            f"{self.base}/v1/chat/completions",
            json=BODY,
            headers={**AUTH, **(headers or {})},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        rid = r.headers["x-request-id"]
        self.sent.append(rid)
        return rid

    def sidecars(self) -> list[int]:
        return sidecar_pids(self.proc.pid)

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        return sample_sum(text, name, **labels)


@contextmanager
def serve(tmp_path: Path, **env_extra: str) -> Iterator[Gateway]:
    port = free_port()
    env = {
        **os.environ,
        "LANEWISE_PLUGINS": "inference,observe",
        "LANEWISE_MODELS": json.dumps({"m": {"kind": "extractive", "scorer": "lexical"}}),
        "LANEWISE_DATA_DIR": str(tmp_path / "data"),
        "LANEWISE_GATEWAY__API_KEYS": json.dumps(
            [{"sha256": hash_key(KEY), "tenant": "acme", "user": "alice"}]
        ),
        "LANEWISE_OBSERVE__LOG_FORMAT": "json",
        "LANEWISE_OBSERVE__LOG_FILE": str(tmp_path / "gateway.log"),
        "LANEWISE_OBSERVE__SPANS_FILE": str(tmp_path / "spans.jsonl"),
        "OMP_NUM_THREADS": "1",
        **env_extra,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("LANEWISE_OBSERVE__SIDECAR", None)  # unset: on under `lanewise serve`
    proc = subprocess.Popen(
        [LANEWISE, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    gateway = Gateway(proc, port, tmp_path)
    try:
        wait_for_port(port, proc, 90, "the gateway")
        yield gateway
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def sidecar_pids(parent: int) -> list[int]:
    """Live ``lanewise.observe.sidecar`` children of ``parent`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z" and b"lanewise.observe.sidecar" in cmdline:
            found.append(int(entry.name))
    return found


def summaries(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    lines = (json.loads(raw) for raw in path.read_text().splitlines() if raw.strip())
    return {line["request_id"]: line for line in lines if line.get("event") == "request.summary"}


def spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(raw) for raw in path.read_text().splitlines() if raw.strip()]


def usage_request_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("select request_id from lanewise_usage")}


def test_the_sidecar_writes_summaries_metrics_usage_and_spans(tmp_path):
    with serve(tmp_path, LANEWISE_OBSERVE__SIDECAR_CPUS="[0]") as gw:
        first = poll(gw.sidecars, bool, timeout=10)
        assert len(first) == 1, "one sidecar per gateway worker"
        assert cpus_allowed(first[0]) == "0"
        traced = gw.chat({"traceparent": TRACEPARENT})
        for _ in range(9):
            gw.chat()
        found = poll(lambda: summaries(gw.log_file), lambda s: set(gw.sent) <= s.keys(), timeout=15)
        assert set(gw.sent) <= found.keys()
        # The sidecar writes them, in the gateway worker's name.
        assert {found[rid]["pid"] for rid in gw.sent} == {gw.proc.pid}
        assert found[traced]["trace_id"] == CLIENT_TRACE
        assert found[traced]["tenant"] == "acme"
        assert found[traced]["tokens_out"] > 0
        # /metrics (the gateway's endpoint) adds up the sidecar's multiprocess files.
        count = poll(
            lambda: gw.metric("lanewise_requests_total", **OK), lambda n: n == 10, timeout=15
        )
        assert count == 10
        assert gw.metric("lanewise_stage_duration_seconds_count", stage="generate") == 10
        usage = poll(
            lambda: httpx.get(f"{gw.base}/v1/usage", headers=AUTH, timeout=10).json(),
            lambda u: sum(row["requests"] for row in u.get("data", [])) == 10,
            timeout=15,
        )
        assert sum(row["requests"] for row in usage["data"]) == 10, usage
        request_span = poll(
            lambda: [
                s
                for s in spans(gw.spans_file)
                if s["kind"] == "SpanKind.SERVER"
                and s["attributes"].get("lanewise.request_id") == traced
            ],
            bool,
            timeout=15,
        )
        assert request_span, "the client's request span was exported by the sidecar"
        span = request_span[0]
        assert span["context"]["trace_id"] == f"0x{CLIENT_TRACE}"
        assert span["parent_id"] == "0x00f067aa0ba902b7"
        assert span["attributes"]["gen_ai.request.model"] == "m"
        assert span["attributes"]["gen_ai.usage.output_tokens"] > 0
        assert span["attributes"]["gen_ai.operation.name"] == "chat"
        # Shutdown writes out what the gateway still held: a burst, then SIGTERM at once.
        burst = [gw.chat() for _ in range(20)]
        gw.proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the SIGTERM once its graceful shutdown (our lifespan) is over.
        assert gw.proc.wait(60) in (0, -signal.SIGTERM)
        assert not sidecar_pids(gw.proc.pid)
    assert set(burst) <= summaries(gw.log_file).keys()
    assert set(gw.sent) <= usage_request_ids(gw.usage_db)
    exported = {s["attributes"].get("lanewise.request_id") for s in spans(gw.spans_file)}
    assert set(burst) <= exported


def test_a_killed_sidecar_costs_telemetry_not_requests_and_comes_back(tmp_path):
    with serve(tmp_path) as gw:
        [first] = poll(gw.sidecars, bool, timeout=10)
        before = gw.chat()
        poll(lambda: summaries(gw.log_file), lambda s: before in s, timeout=15)
        os.kill(first, signal.SIGKILL)
        # Once it is gone (its pipe closed), nothing written for it is lost uncounted; what
        # was in the pipe at the moment it died would be (documented).
        poll(lambda: pid_alive(first), lambda alive: not alive, timeout=10)
        # Requests go on (all 200) while no sidecar runs; their telemetry is dropped, counted.
        dark = [gw.chat() for _ in range(10)]
        dropped = poll(
            lambda: gw.metric("lanewise_telemetry_dropped_total", sink="sidecar"),
            lambda n: n > 0,
            timeout=10,
        )
        assert dropped > 0
        second = poll(gw.sidecars, lambda pids: bool(pids) and pids != [first], timeout=15)
        assert len(second) == 1
        assert second[0] != first
        after = [gw.chat() for _ in range(5)]
        found = poll(lambda: summaries(gw.log_file), lambda s: set(after) <= s.keys(), timeout=15)
        assert set(after) <= found.keys(), "the new sidecar observes later requests"
        lost = [rid for rid in dark if rid not in found]
        dropped = gw.metric("lanewise_telemetry_dropped_total", sink="sidecar")
        assert dropped >= len(lost) > 0
        # The gateway dies without a word: its sidecar sees end of file and leaves.
        gw.proc.kill()
        gw.proc.wait(30)
        assert not poll(lambda: pid_alive(second[0]), lambda alive: not alive, timeout=15)


def cpus_allowed(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(
        line.split(":")[1].strip()
        for line in status.splitlines()
        if line.startswith("Cpus_allowed_list")
    )


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_with_the_sidecar_the_gateway_runs_no_telemetry_threads(
    tmp_path, lanewise_settings, register_plugin, monkeypatch
):
    """In-process too when asked (``observe.sidecar = true``): the app's lifespan starts it."""
    monkeypatch.setenv("LANEWISE_OBSERVE__SIDECAR", "true")
    monkeypatch.setenv("LANEWISE_OBSERVE__LOG_FORMAT", "json")
    monkeypatch.setenv("LANEWISE_OBSERVE__LOG_FILE", str(tmp_path / "gateway.log"))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    plugin = ObservePlugin()
    pm = register_plugin(plugin, allowlist=["inference"])
    models = {"m": {"kind": "extractive", "scorer": "lexical"}}
    app = create_app(lanewise_settings(models=models), plugin_manager=pm)
    with serve_in_thread(app) as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=BODY, timeout=30)
        assert r.status_code == 200
        names = {t.name for t in threading.enumerate()}
        assert plugin.telemetry is not None
        assert plugin.telemetry.link is not None
        assert plugin.telemetry.link.proc is not None
        child = plugin.telemetry.link.proc.pid
        rid = r.headers["x-request-id"]
        found = poll(lambda: summaries(tmp_path / "gateway.log"), lambda s: rid in s, timeout=15)
        assert found[rid]["pid"] == os.getpid()
    assert not names & {
        "lanewise-telemetry",
        "lanewise-usage-writer",
        "lanewise-span-exporter",
    }
    assert not pid_alive(child)


@pytest.mark.parametrize("exporter", ["no.such.module:Exporter", "json:loads"])
def test_a_bad_span_exporter_path_fails_at_start(exporter):
    from lanewise.core.errors import ConfigError
    from lanewise.observe.settings import ObserveSettings
    from lanewise.observe.traces import configured_exporter

    with pytest.raises(ConfigError, match=r"observe\.span_exporter"):
        configured_exporter(ObserveSettings(span_exporter=exporter))


def test_a_backlog_reaches_every_sink_and_end_of_file_flushes_it(tmp_path):
    """The child alone, its stdin a burst of 3000 records (a restart's backlog): nothing
    dropped, every summary line, usage row, span and count written before it exits."""
    from lanewise.core.context import ResponseOutcome
    from lanewise.core.types import Principal, StageTiming, Usage, UsageEvent
    from lanewise.observe.record import RequestRecord
    from lanewise.observe.settings import ObserveSettings
    from lanewise.observe.wire import REQUEST, FrameBuffer

    n = 3000
    observe = ObserveSettings(
        log_format="json", log_file=tmp_path / "log.jsonl", spans_file=tmp_path / "spans.jsonl"
    )
    usage_url = f"sqlite:///{tmp_path / 'usage.sqlite3'}"
    buffer = FrameBuffer()
    principal = Principal(tenant="acme")
    now = time.time()
    for i in range(n):
        rid = f"r{i}"
        usage = UsageEvent(
            request_id=rid,
            principal=principal,
            model="m",
            operation="chat",
            usage=Usage(prompt_tokens=3, completion_tokens=4),
        )
        stage = StageTiming(request_id=rid, stage="generate", started_at=now, duration_s=0.01)
        buffer.add(
            REQUEST,
            RequestRecord(
                request_id=rid,
                method="POST",
                path="/v1/chat/completions",
                route="/v1/chat/completions",
                started_wall=now,
                duration_s=0.02,
                response=ResponseOutcome(status=200, body_done=True),
                principal=principal,
                model="m",
                trace_id=f"{i + 1:032x}",
                span_id=i + 1,
                sampled=True,
                usage_events=[usage],
                stage_events=[stage],
                completed=True,
            ),
        )
    exposition = run_sidecar(tmp_path, observe, usage_url, buffer.take()[0])
    lines = summaries(tmp_path / "log.jsonl")
    assert len(lines) == n
    assert {line["pid"] for line in lines.values()} == {os.getpid()}
    assert len(usage_request_ids(tmp_path / "usage.sqlite3")) == n
    server = [s for s in spans(tmp_path / "spans.jsonl") if s["kind"] == "SpanKind.SERVER"]
    assert len(server) == n
    assert sample_sum(exposition, "lanewise_requests_total", **OK) == n
    assert sample_sum(exposition, "lanewise_tokens_total", direction="output") == 4 * n
    assert sample_sum(exposition, "lanewise_telemetry_dropped_total") == 0


def run_sidecar(tmp_path: Path, observe: Any, usage_url: str, messages: bytes) -> str:
    """Run the sidecar on ``messages`` (its settings first) to end of file; its metrics."""
    from lanewise.observe.sidecar import child_config
    from lanewise.observe.wire import config_frame

    stdin = config_frame(child_config(observe, usage_url, os.getpid())) + messages
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "OMP_NUM_THREADS": "1"}
    child = subprocess.run(
        [sys.executable, "-m", "lanewise.observe.sidecar"],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr.decode()
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from lanewise.observe.metrics import exposition as e; "
            "import sys; sys.stdout.write(e()[0].decode())",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_sidecar_sees_ingestion_and_answers_for_the_stale_index_signal(tmp_path):
    """Events outside a request travel as their own messages: an ingestion's new index
    version (a stage) and a model call (usage) reach the detector and the usage table."""
    from lanewise.core.context import ResponseOutcome
    from lanewise.core.types import Principal, StageTiming, Usage, UsageEvent
    from lanewise.observe.record import RequestRecord
    from lanewise.observe.settings import ObserveSettings
    from lanewise.observe.wire import (
        REQUEST,
        STAGE,
        USAGE,
        FrameBuffer,
        StandaloneStage,
        StandaloneUsage,
    )

    observe = ObserveSettings(log_format="json", log_file=tmp_path / "log.jsonl")
    now = time.time()
    acme = Principal(tenant="acme")
    buffer = FrameBuffer()
    ingest = StageTiming(
        request_id="",
        stage="ingest",
        started_at=now - 1000,
        duration_s=1.0,
        attributes={"lanewise.index.version": 2, "lanewise.tenant": "acme"},
    )
    buffer.add(STAGE, StandaloneStage(event=ingest, at=now - 1000))
    embedding = UsageEvent(
        request_id="ingest-job",
        principal=acme,
        model="embedder",
        operation="embedding",
        usage=Usage(prompt_tokens=50),
        purpose="ingest",
    )
    buffer.add(USAGE, StandaloneUsage(event=embedding, at=now))
    answer = RequestRecord(
        request_id="old-answer",
        method="POST",
        path="/v1/chat/completions",
        route="/v1/chat/completions",
        started_wall=now,
        response=ResponseOutcome(status=200, body_done=True),
        principal=acme,
        index_version=1,
        completed=True,
    )
    buffer.add(REQUEST, answer)
    usage_url = f"sqlite:///{tmp_path / 'usage.sqlite3'}"
    exposition = run_sidecar(tmp_path, observe, usage_url, buffer.take()[0])
    assert sample_sum(exposition, "lanewise_stale_index_answers_total", tenant="acme") == 1
    assert sample_sum(exposition, "lanewise_index_version", tenant="acme") == 1
    lines = [json.loads(raw) for raw in (tmp_path / "log.jsonl").read_text().splitlines()]
    stale = [line for line in lines if line["event"] == "index.stale"]
    assert stale[0]["newest_index_version"] == 2
    assert stale[0]["request_id"] == "old-answer"
    assert usage_request_ids(tmp_path / "usage.sqlite3") == {"ingest-job"}
    assert (
        sample_sum(exposition, "lanewise_tokens_total", direction="input", model="embedder") == 50
    )
