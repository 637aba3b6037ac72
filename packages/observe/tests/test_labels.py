"""Label cardinality stays bounded: users only on opt-in, and capped."""

from __future__ import annotations

import httpx
from lanewise.core.auth import hash_key
from lanewise.observe.metrics import OTHER, LabelCap
from prometheus_client.parser import text_string_to_metric_families


def test_label_cap_admits_the_first_values_only():
    cap = LabelCap(2)
    assert [cap(v) for v in ("a", "b", "c", "a", None)] == ["a", "b", OTHER, "a", ""]


def user_labels(text: str) -> set[str]:
    return {
        s.labels["user"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "lanewise_tokens_total" and s.labels.get("tenant") == "capped"
    }


def test_user_labels_are_opt_in_and_capped(observed_gateway, monkeypatch):
    keys = [
        {"sha256": hash_key(f"key-{u}"), "tenant": "capped", "user": u}
        for u in ("ann", "ben", "cat")
    ]
    body = {"model": "scripted", "messages": [{"role": "user", "content": "tokens=2"}]}

    def ask_all(base: str) -> str:
        for u in ("ann", "ben", "cat"):
            headers = {"authorization": f"Bearer key-{u}"}
            assert httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers).is_success
        return httpx.get(f"{base}/metrics").text

    with observed_gateway(gateway={"api_keys": keys}) as (base, _):
        assert user_labels(ask_all(base)) == {""}  # off by default: no user label values
    monkeypatch.setenv("LANEWISE_OBSERVE__METRICS_USER_LABELS", "true")
    monkeypatch.setenv("LANEWISE_OBSERVE__METRICS_USER_CAP", "2")
    with observed_gateway(gateway={"api_keys": keys}) as (base, _):
        assert user_labels(ask_all(base)) == {"", "ann", "ben", OTHER}
