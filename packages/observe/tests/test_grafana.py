"""The Grafana dashboard queries only metrics the gateway really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
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


def test_dashboard_metrics_are_exported_by_the_gateway(observed_gateway):
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
    assert queried - exported == set()
    # The panels: tokens and cost by tenant, stage heatmap, TTFT, cache, index age.
    for needed in (
        "lanewise_tokens_total",
        "lanewise_cost_total",
        "lanewise_stage_duration_seconds_bucket",
        "lanewise_ttft_seconds_bucket",
        "lanewise_cache_lookups_total",
        "lanewise_index_age_seconds",
    ):
        assert needed in queried
    assert any(p["type"] == "heatmap" for p in panels)
