"""The Grafana dashboard queries only metrics the gateway really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from lanewise.core.gateway.app import create_app
from lanewise.core.server import serve_in_thread
from lanewise.core.testing import poll
from lanewise.observe.plugin import ObservePlugin
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "lanewise-gateway.json"
METRIC = re.compile(r"\b(lanewise_[a-z0-9_]+)")
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}


def exported_series(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def lane_state_text(lanewise_settings: Any, register_plugin: Any, redis_url: str) -> str:
    """``/metrics`` of a gateway with the lanes that report state: a pool, governance, ingest."""
    models = {
        "p": {
            "kind": "pool",
            "pools": {
                "interactive": {"replicas": [{"kind": "extractive"}]},
                "batch": {"replicas": [{"kind": "extractive"}]},
            },
        }
    }
    settings = lanewise_settings(
        models=models,
        redis_url=redis_url,
        ingest={"queue": "celery", "task_time_limit_s": 5, "visibility_timeout_s": 10},
        governance={"budgets": [{"scope": "tenant", "window": "day", "limit": 1e9}]},
    )
    pm = register_plugin(ObservePlugin(), allowlist=["inference", "ingest", "governance"])
    wanted = ("lanewise_breaker_state", "lanewise_ingest_queue_depth", "lanewise_budget_refusals")
    with serve_in_thread(create_app(settings, plugin_manager=pm)) as base:
        body = {"model": "p", "messages": [{"role": "user", "content": "The sky is blue."}]}
        assert httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30).status_code == 200
        return poll(  # lane state is collected once a second
            lambda: httpx.get(f"{base}/metrics", timeout=30).text,
            lambda text: all(name in text for name in wanted),
            timeout=10,
        )


def test_dashboard_metrics_are_exported_by_the_gateway(
    observed_gateway, lanewise_settings, register_plugin, redis_server
):
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    queried = {
        name
        for panel in panels
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }
    with observed_gateway() as (base, _plugin):
        body = {"model": "scripted", "messages": [{"role": "user", "content": "tokens=3"}]}
        httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30)
        text = httpx.get(f"{base}/metrics", timeout=30).text
    exported = exported_series(text)
    exported |= exported_series(
        lane_state_text(lanewise_settings, register_plugin, redis_server.url)
    )
    assert queried - exported == set()
    # The panels: tokens and cost by tenant, stage heatmap, TTFT, cache, index age,
    # breakers and pools, ingest queue depth, budget refusals.
    for needed in (
        "lanewise_tokens_total",
        "lanewise_cost_total",
        "lanewise_stage_duration_seconds_bucket",
        "lanewise_ttft_seconds_bucket",
        "lanewise_cache_lookups_total",
        "lanewise_index_age_seconds",
        "lanewise_breaker_state",
        "lanewise_pool_in_flight",
        "lanewise_ingest_queue_depth",
        "lanewise_budget_refusals_total",
    ):
        assert needed in queried
    assert any(p["type"] == "heatmap" for p in panels)
