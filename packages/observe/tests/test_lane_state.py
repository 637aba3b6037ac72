"""Other lanes' state on ``/metrics`` through ``lanewise_collect_state``: real lanes, real scrapes.

The inference lane's pools (breakers, calls in flight), governance's refusals and the
ingest lane's Celery queue on a real Redis; each value is read back by scraping
``/metrics`` with prometheus-client's parser, as Prometheus would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from lanewise.core.errors import Unavailable
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import free_port, serve_in_thread
from lanewise.core.settings import load_settings
from lanewise.core.testing import poll
from lanewise.core.testing.services import wait_for_port
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest, StateSample, Usage
from lanewise.governance.refusals import refusal_state
from lanewise.ingest.celery_app import PING_TASK, create_celery_app
from lanewise.ingest.testing import LANEWISE
from lanewise.observe.plugin import ObservePlugin
from lanewise.observe.state import STATE
from prometheus_client.parser import text_string_to_metric_families

from .test_metrics_workers import sample_sum, summary_lines, summary_pids

Labels = dict[str, str]


def samples(text: str, name: str, **labels: str) -> list[float]:
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def wait_for_value(
    base: str, name: str, expected: float, timeout: float = 10.0, **labels: str
) -> str:
    """Scrape until the series has ``expected`` (state is collected once a second)."""
    text = poll(
        lambda: httpx.get(f"{base}/metrics", timeout=10).text,
        lambda text: samples(text, name, **labels) == [expected],
        timeout=timeout,
    )
    assert samples(text, name, **labels) == [expected], (name, labels, text)
    return text


@contextmanager
def observed(
    lanewise_settings: Callable[..., Any],
    register_plugin: Callable[..., Any],
    plugins: list[object],
    lanes: list[str],
    **settings: Any,
) -> Iterator[str]:
    pm = register_plugin(ObservePlugin(), *plugins, allowlist=lanes)
    with serve_in_thread(create_app(lanewise_settings(**settings), plugin_manager=pm)) as base:
        yield base


# -- the hook itself ------------------------------------------------------------------------
class Reporter:
    def __init__(self) -> None:
        self.total = 3.0

    @hookimpl
    def lanewise_collect_state(self, components: Any) -> list[StateSample]:
        assert components.settings is not None
        return [
            StateSample(
                name="lanewise_test_widgets",
                value=7,
                labels={"shelf": "a"},
                help="widgets on a shelf",
                merge="max",
            ),
            StateSample(name="lanewise_test_sold", kind="counter", value=self.total),
            StateSample(name="not a metric name", value=1),
        ]


def test_hook_lanewise_collect_state(lanewise_settings, register_plugin, observe_env):
    reporter = Reporter()
    with observed(lanewise_settings, register_plugin, [reporter], []) as base:
        text = wait_for_value(base, "lanewise_test_widgets", 7, shelf="a")
        assert "widgets on a shelf" in text
        wait_for_value(base, "lanewise_test_sold_total", 3)
        # A counter is reported as the source's running total; the export follows it.
        reporter.total = 5
        text = wait_for_value(base, "lanewise_test_sold_total", 5)
        assert sample_sum(text, "lanewise_telemetry_dropped_total", sink="state") >= 1
    assert {"lanewise_test_widgets", "lanewise_test_sold_total"} <= STATE.names()


# -- inference: pools -----------------------------------------------------------------------
class Gate:
    """A replica whose stream waits for the test to open the gate; ``broken`` always fails."""

    def __init__(self, broken: bool = False) -> None:
        self.name = "gate"
        self.broken = broken
        self.open = threading.Event()

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if self.broken:
            raise Unavailable("this replica is down on purpose", retry_after_s=1.0)
        yield ChatChunk(delta="waiting ")
        await asyncio.to_thread(self.open.wait, 30)  # bounded: a failed test never sets it
        yield ChatChunk(finish_reason="stop", usage=Usage(prompt_tokens=1, completion_tokens=1))

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        raise AssertionError("pools stream")


class Replicas:
    def __init__(self) -> None:
        self.gate = Gate()

    @hookimpl
    def lanewise_register_backends(self, register: Any) -> None:
        register("gate", lambda ctx: self.gate)
        register("broken", lambda ctx: Gate(broken=True))


def test_pool_breakers_and_calls_in_flight(lanewise_settings, register_plugin, observe_env):
    replicas = Replicas()
    pool = {"kind": "pool", "breaker": {"failure_threshold": 1, "reset_after_s": 3600}}
    models = {
        "p": {
            **pool,
            "pools": {
                "interactive": {"replicas": [{"kind": "gate", "name": "warm-0"}]},
                "batch": {"replicas": [{"kind": "broken", "name": "spot-0"}]},
            },
        },
        "q": {**pool, "pools": {"interactive": {"replicas": [{"kind": "broken", "name": "b"}]}}},
    }
    body = {"model": "p", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with observed(
        lanewise_settings, register_plugin, [replicas], ["inference"], models=models
    ) as base:
        warm = {"model": "p", "pool": "interactive", "replica": "warm-0"}
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            try:
                while "waiting" not in next(lines):  # the first token is out: in flight
                    pass
                wait_for_value(base, "lanewise_pool_in_flight", 1, capacity="warm", **warm)
                wait_for_value(base, "lanewise_pool_in_flight", 0, model="p", replica="spot-0")
            finally:
                replicas.gate.open.set()
            list(lines)
        wait_for_value(base, "lanewise_pool_in_flight", 0, capacity="warm", **warm)
        wait_for_value(base, "lanewise_breaker_state", 0, **warm)
        wait_for_value(base, "lanewise_breaker_state", 0, model="q", replica="b")
        down = {**body, "model": "q", "stream": False}
        assert httpx.post(f"{base}/v1/chat/completions", json=down).status_code == 503
        wait_for_value(base, "lanewise_breaker_state", 2, model="q", pool="interactive")


# -- governance: refusals by scope ------------------------------------------------------------
def refused_so_far(reason: str) -> float:
    """This process's count in governance (other tests of the process may have refused)."""
    found = [s.value for s in refusal_state() if s.labels == {"scope": "tenant", "reason": reason}]
    return sum(found)


def test_budget_refusals_by_scope(lanewise_settings, register_plugin, observe_env):
    body = {"model": "m", "messages": [{"role": "user", "content": "one two three four"}]}
    name = "lanewise_budget_refusals_total"
    models = {"m": {"kind": "extractive"}}
    lanes = ["inference", "governance"]
    budget = {"budgets": [{"scope": "tenant", "window": "day", "limit": 1}]}
    where = {"scope": "tenant", "reason": "budget"}
    with observed(
        lanewise_settings, register_plugin, [], lanes, models=models, governance=budget
    ) as base:
        before = refused_so_far("budget")
        wait_for_value(base, name, before, **where)  # the export follows governance's count
        for _ in range(2):
            assert httpx.post(f"{base}/v1/chat/completions", json=body).status_code == 429
        wait_for_value(base, name, before + 2, **where)
    rate = {"rate_limits": [{"scope": "tenant", "rpm": 1}]}
    where = {"scope": "tenant", "reason": "rate_limit"}
    with observed(
        lanewise_settings, register_plugin, [], lanes, models=models, governance=rate
    ) as base:
        before = refused_so_far("rate_limit")
        wait_for_value(base, name, before, **where)
        codes = [httpx.post(f"{base}/v1/chat/completions", json=body).status_code for _ in "abc"]
        assert codes == [200, 429, 429]
        wait_for_value(base, name, before + 2, **where)


# -- ingest: the Celery queue ------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_ingest_queue_depth_on_celery(
    lanewise_settings, register_plugin, observe_env, redis_server
):
    settings = dict(
        redis_url=redis_server.url,
        ingest={"queue": "celery", "task_time_limit_s": 5, "visibility_timeout_s": 10},
        models={"m": {"kind": "extractive"}},
    )
    with observed(
        lanewise_settings, register_plugin, [], ["inference", "ingest"], **settings
    ) as base:
        wait_for_value(base, "lanewise_ingest_queue_depth", 0, queue="ingest")
        app = create_celery_app(lanewise_settings(**settings))
        try:
            for _ in range(3):
                app.send_task(PING_TASK, queue="ingest")  # no worker: they wait
        finally:
            app.close()
        wait_for_value(base, "lanewise_ingest_queue_depth", 3, queue="ingest")
        wait_for_value(base, "lanewise_ingest_queue_depth", 0, queue="embed")
        redis_server.stop()
        # The broker is gone: over more than one collection (1 s, probe timeout 0.5 s) every
        # scrape answers and the series keeps its last value rather than a wrong one.
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            scrape = httpx.get(f"{base}/metrics", timeout=10)
            assert scrape.status_code == 200
            assert samples(scrape.text, "lanewise_ingest_queue_depth", queue="ingest") == [3.0]
            time.sleep(0.1)


# -- two worker processes ------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_lane_state_merges_across_two_workers(tmp_path, redis_server):
    """Both workers open their own breaker of the dead replica and both read the same
    Celery queue: ``max`` shows 2 and 3 from whichever worker answers (``sum`` would
    show 4 and 6); calls in flight add up to 0."""
    port, dead = free_port(), free_port()
    log_file = tmp_path / "gateway.log"
    replica = {"kind": "openai", "base_url": f"http://127.0.0.1:{dead}/v1", "name": "r0"}
    models = {
        "p": {
            "kind": "pool",
            "breaker": {"failure_threshold": 1, "reset_after_s": 3600},
            "pools": {"interactive": {"replicas": [replica]}},
        }
    }
    ingest = {"queue": "celery", "task_time_limit_s": 5, "visibility_timeout_s": 10}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LANEWISE_")},
        "LANEWISE_PLUGINS": "inference,ingest,observe",
        "LANEWISE_MODELS": json.dumps(models),
        "LANEWISE_REDIS_URL": redis_server.url,
        "LANEWISE_INGEST": json.dumps(ingest),
        "LANEWISE_DATA_DIR": str(tmp_path / "data"),
        "LANEWISE_OBSERVE__LOG_FORMAT": "json",
        "LANEWISE_OBSERVE__LOG_FILE": str(log_file),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    app = create_celery_app(load_settings(None, redis_url=redis_server.url, ingest=ingest))
    try:
        for _ in range(3):
            app.send_task(PING_TASK, queue="ingest")
    finally:
        app.close()
    proc = subprocess.Popen(
        [LANEWISE, "serve", "--workers", "2", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    body = {"model": "p", "messages": [{"role": "user", "content": "anyone there?"}]}
    try:
        wait_for_port(port, proc, 90, "the gateway")
        sent, pids = 0, set()
        while len(pids) < 2 and sent < 400:  # a new connection each: both workers get some
            assert httpx.post(f"{base}/v1/chat/completions", json=body).status_code == 503
            sent += 1
            if sent % 10 == 0:
                pids = summary_pids(log_file)
        poll(lambda: len(summary_lines(log_file)), lambda n: n >= sent, timeout=10)
        assert len(summary_pids(log_file)) == 2, f"one worker served all {sent} requests"
        where = {"model": "p", "pool": "interactive", "replica": "r0"}
        wait_for_value(base, "lanewise_breaker_state", 2, **where)
        wait_for_value(base, "lanewise_ingest_queue_depth", 3, queue="ingest")
        scrapes = [httpx.get(f"{base}/metrics", timeout=10).text for _ in range(6)]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    for text in scrapes:
        assert samples(text, "lanewise_breaker_state", **where) == [2.0]
        assert samples(text, "lanewise_ingest_queue_depth", queue="ingest") == [3.0]
        assert samples(text, "lanewise_pool_in_flight", capacity="warm", **where) == [0.0]
    assert "Traceback" not in err
