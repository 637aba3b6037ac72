"""Stale-index and token-anomaly signals: a log event and a metric each, once per episode."""

from __future__ import annotations

import httpx
from lanewise.core.types import StageTiming
from lanewise.observe import metrics
from lanewise.observe.signals import StaleIndexDetector, TokenAnomalyDetector
from prometheus_client.parser import text_string_to_metric_families


def metric(name: str, **labels: str) -> float:
    text = metrics.exposition()[0].decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_stale_index_detector():
    detector = StaleIndexDetector(threshold_s=60)
    assert detector.served("t", 3, now=1000).stale_by_s is None
    detector.completed("t", 4, now=1010)  # a newer index is ready
    assert detector.served("t", 3, now=1050).stale_by_s is None  # within the threshold
    late = detector.served("t", 3, now=1100)
    assert late.stale_by_s == 90
    assert late.age_s == 100
    assert detector.served("t", 4, now=1100).stale_by_s is None
    assert detector.served("other", 1, now=1100).stale_by_s is None  # tenants are separate


def test_token_anomaly_detector_reports_once_per_episode():
    detector = TokenAnomalyDetector(factor=3, window=4, baseline_min=8)
    results = [detector.observe("p@1", 10) for _ in range(12)]
    assert all(anomaly is None for _, anomaly in results)
    assert results[-1][0] == 1.0
    spikes = [detector.observe("p@1", 100) for _ in range(4)]
    fired = [a for _, a in spikes if a is not None]
    assert len(fired) == 1
    assert fired[0].ratio >= 3
    assert detector.observe("other@1", 1000) == (None, None)  # no baseline yet


def test_signals_through_the_gateway(observed_gateway, read_logs, monkeypatch):
    monkeypatch.setenv("LANEWISE_OBSERVE__ANOMALY_WINDOW", "5")
    monkeypatch.setenv("LANEWISE_OBSERVE__ANOMALY_BASELINE_MIN", "10")
    monkeypatch.setenv("LANEWISE_OBSERVE__STALE_INDEX_AFTER_S", "0.001")
    stale_before = metric("lanewise_stale_index_answers_total", tenant="default")
    anomalies_before = metric("lanewise_token_anomalies_total", prompt="model:scripted")
    misses_before = metric("lanewise_cache_lookups_total", cache="result", result="miss")

    def ask(tokens: int, rag: bool = False) -> None:
        body = {"model": "scripted", "messages": [{"role": "user", "content": f"tokens={tokens}"}]}
        if rag:
            body["lanewise"] = {"retrieval": {"k": 1}}
        assert httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30).status_code == 200

    with observed_gateway() as (base, plugin):
        for _ in range(15):
            ask(2)
        for _ in range(8):
            ask(60)
        # The ingest lane finished index 7 for this tenant; an answer from index 6 is stale.
        plugin.scripted.index_version = 6
        ask(2, rag=True)
        plugin.lanewise_on_stage(
            event=StageTiming(
                request_id="",
                stage="ingest",
                started_at=0.0,
                duration_s=1.0,
                attributes={"lanewise.index.version": 7, "lanewise.tenant": "default"},
            )
        )
        import time

        time.sleep(0.01)
        ask(2, rag=True)
    logs = read_logs()
    anomalies = [line for line in logs if line["event"] == "tokens.anomaly"]
    assert len(anomalies) == 1
    assert anomalies[0]["prompt"] == "model:scripted"
    assert anomalies[0]["ratio"] >= 3
    stale = [line for line in logs if line["event"] == "index.stale"]
    assert len(stale) == 1
    assert stale[0]["index_version"] == 6
    assert stale[0]["newest_index_version"] == 7
    assert stale[0]["tenant"] == "default"
    assert stale[0]["request_id"]
    assert metric("lanewise_token_anomalies_total", prompt="model:scripted") - anomalies_before == 1
    assert metric("lanewise_stale_index_answers_total", tenant="default") - stale_before == 1
    assert metric("lanewise_index_version", tenant="default") == 6
    misses = metric("lanewise_cache_lookups_total", cache="result", result="miss")
    assert misses - misses_before == 2
    summaries = [line for line in logs if line["event"] == "request.summary"]
    assert summaries[-1]["index_version"] == 6
    assert summaries[-1]["cache_misses"] == 1
    assert set(summaries[-1]["stages_ms"]) >= {"retrieve", "cache", "prompt", "generate"}
