"""A real ``lanewise worker`` (prefork, 2 children) on real Redis: its ``/metrics`` and logs.

Tasks run in the pool's children; the worker's main process serves ``/metrics``, so
the counts must travel through the multiprocess directory the observe lane gives the
worker. Every log line — Celery's own loggers, in the main process and in the
children — is rendered by the same structlog processors as the gateway's.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lanewise.core.server import free_port
from lanewise.core.settings import load_settings
from lanewise.core.testing import poll
from lanewise.ingest.celery_app import PING_TASK, create_celery_app
from lanewise.ingest.testing import Worker, pgvector_server

from .test_metrics_workers import sample_sum

TASKS = 6


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with pgvector_server() as url:
        yield url


@pytest.mark.timeout(240)
def test_worker_exposes_task_metrics_and_logs_json(tmp_path: Path, redis_server: Any, pg_url):
    port = free_port()
    config = tmp_path / "lanewise.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nredis_url = "{redis_server.url}"\n'
        '[retrieval.embedder]\nkind = "noop"\ndimension = 8\n'
        f'[retrieval.vector_store]\nkind = "pgvector"\nurl = "{pg_url}"\n'
        f'table = "t_{uuid.uuid4().hex[:10]}"\ndimension = 8\n'
        '[ingest]\nqueue = "celery"\ntask_time_limit_s = 5\nvisibility_timeout_s = 10\n'
        f'[observe]\nlog_format = "json"\nworker_metrics_port = {port}\n'
    )
    worker = Worker(config, tmp_path / "worker.log", "obs", concurrency=2).start()
    try:
        app = create_celery_app(load_settings(config))
        try:
            for _ in range(TASKS):
                app.send_task(PING_TASK, queue="ingest")
        finally:
            app.close()
        ping = {"task": PING_TASK}
        # Stop as soon as the tasks are counted: the children's log lines go through
        # the lane's buffered writer, and each child flushes it as it exits.
        text = poll(
            lambda: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text,
            lambda text: (
                sample_sum(text, "lanewise_celery_tasks_total", state="success", **ping) >= TASKS
            ),
            timeout=60,
            interval=0.2,
        )
        done = sample_sum(text, "lanewise_celery_tasks_total", state="success", **ping)
        children = set(worker.pool_pids())
    finally:
        worker.stop()
    assert done == TASKS, text
    assert sample_sum(text, "lanewise_celery_task_duration_seconds_count", **ping) == TASKS
    lines = [json.loads(raw) for raw in worker.output().splitlines() if raw.startswith("{")]
    celery = [line for line in lines if str(line.get("logger", "")).startswith("celery")]
    assert celery, worker.output()[-2000:]
    for line in lines:  # the gateway's processors: level, logger, pid, ISO timestamp
        assert {"event", "level", "logger", "pid", "timestamp"} <= line.keys(), line
        assert line["timestamp"].endswith("Z")
    assert any(" ready." in line["event"] for line in celery)  # the main process
    succeeded = [line for line in celery if "succeeded" in line["event"]]
    assert len(succeeded) == TASKS  # one per task, from the children that ran them
    assert {line["pid"] for line in succeeded} <= children
    assert worker.process is not None
    assert worker.process.pid not in children
    # What is left is printed, not logged (Celery's start-up banner, a warnings.warn):
    # no line in Celery's own log format ("[2026-11-30 05:27:22,123: INFO/MainProcess] ...").
    celery_format = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+: [A-Z]+/")
    assert not [raw for raw in worker.output().splitlines() if celery_format.match(raw)]
