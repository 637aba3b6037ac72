"""Every request leaves exactly one summary line with every required field, whatever happens."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from lanewise.observe.summary import REQUIRED_FIELDS

OUTCOMES = ["ok", "length", "fail_before", "fail_mid", "disconnect", "unknown_model", "bad_body"]

request_specs = st.lists(
    st.tuples(st.sampled_from(OUTCOMES), st.booleans(), st.integers(min_value=1, max_value=12)),
    min_size=1,
    max_size=4,
)


def send(client: httpx.Client, base: str, outcome: str, stream: bool, tokens: int) -> str:
    rid = uuid.uuid4().hex
    script = f"tokens={tokens}"
    if outcome == "length":
        script += " finish=length"
    elif outcome == "fail_before":
        script += " fail=before"
    elif outcome == "fail_mid":
        script += f" fail=mid tokens={max(tokens, 2)}"
    elif outcome == "disconnect":
        script = "tokens=400 delay=0.01"
        stream = True
    body: dict[str, Any] = {
        "model": "nope" if outcome == "unknown_model" else "scripted",
        "messages": [{"role": "user", "content": script}],
        "stream": stream,
    }
    if outcome == "bad_body":
        body["messages"] = []
    headers = {"x-request-id": rid}
    if outcome == "disconnect":
        with client.stream("POST", f"{base}/v1/chat/completions", json=body, headers=headers) as r:
            for line in r.iter_lines():
                if '"w1 "' in line:
                    break  # leave mid-stream: the with block closes the connection
        return rid
    client.post(f"{base}/v1/chat/completions", json=body, headers=headers)
    return rid


def expected(outcome: str, stream: bool) -> dict[str, Any]:
    if outcome == "disconnect":
        return {"outcome": "client_disconnect", "finish_reason": "cancelled", "stream": True}
    if outcome in ("ok", "length"):
        return {
            "outcome": "ok",
            "status": 200,
            "finish_reason": "stop" if outcome == "ok" else "length",
        }
    if outcome == "unknown_model":
        return {"outcome": "rejected", "status": 404, "error_type": "not-found", "tokens_out": 0}
    if outcome == "bad_body":
        return {"outcome": "rejected", "status": 400, "model": None}
    # Upstream errors: a 502 problem before a stream starts, an error event once it has.
    if stream:
        return {"outcome": "error", "status": 200, "error_type": "upstream-error", "stream": True}
    return {"outcome": "error", "status": 502, "error_type": "upstream-error"}


def test_every_request_has_one_complete_summary_line(observed_gateway, read_summaries):
    with observed_gateway() as (base, _plugin), httpx.Client(timeout=30) as client:

        @settings(max_examples=25, deadline=None)
        @given(request_specs)
        def check(specs: list[tuple[str, bool, int]]) -> None:
            sent = [(send(client, base, *spec), spec) for spec in specs]
            found = read_summaries([rid for rid, _ in sent])
            for rid, (outcome, stream, _tokens) in sent:
                lines = found.get(rid, [])
                assert len(lines) == 1, (rid, outcome, lines)
                line = lines[0]
                missing = [f for f in REQUIRED_FIELDS if f not in line]
                assert not missing, missing
                assert line["tenant"] == "default"
                assert isinstance(line["duration_ms"], float)
                assert line["duration_ms"] > 0
                for key, value in expected(outcome, stream).items():
                    assert line[key] == value, (outcome, stream, key, line)
                if outcome in ("ok", "length"):
                    assert line["tokens_in"] == 7
                    assert line["tokens_out"] == _tokens
                    assert line["ttft_ms"] is not None
                    assert "generate" in line["stages_ms"]
                    assert line["model"] == "scripted"

        check()


def test_refused_requests_have_a_summary_line_too(observed_gateway, read_summaries):
    """401s are raised by core's middleware; the observe middleware sits outside it."""
    from lanewise.core.auth import hash_key

    keys = [{"sha256": hash_key("good"), "tenant": "acme"}]
    with observed_gateway(gateway={"api_keys": keys}) as (base, _plugin):
        body = {"model": "scripted", "messages": [{"role": "user", "content": "tokens=1"}]}
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer wrong", "x-request-id": "refused-1"},
        )
        assert r.status_code == 401
        ok = httpx.post(
            f"{base}/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer good", "x-request-id": "allowed-1"},
        )
        assert ok.status_code == 200
        found = read_summaries(["refused-1", "allowed-1"])
    refused = found["refused-1"][0]
    assert refused["status"] == 401
    assert refused["outcome"] == "rejected"
    assert refused["error_type"] == "unauthorized"
    assert refused["tenant"] is None
    assert found["allowed-1"][0]["tenant"] == "acme"


def test_unrouted_requests_have_a_summary_line_and_no_path_label(observed_gateway, read_summaries):
    """404/405 never reach route middleware: Litestar's outer exception hook writes theirs."""
    with observed_gateway() as (base, _plugin):
        missing = httpx.get(f"{base}/v1/no-such-route/123", headers={"x-request-id": "nf-1"})
        wrong = httpx.delete(f"{base}/v1/models", headers={"x-request-id": "mna-1"})
        minted = httpx.get(f"{base}/v1/also-missing")
        assert (missing.status_code, wrong.status_code, minted.status_code) == (404, 405, 404)
        minted_id = minted.json()["request_id"]
        found = read_summaries(["nf-1", "mna-1", minted_id])
        metrics = httpx.get(f"{base}/metrics").text
    for rid, status, slug in (
        ("nf-1", 404, "not-found"),
        ("mna-1", 405, "method-not-allowed"),
        (minted_id, 404, "not-found"),
    ):
        assert len(found[rid]) == 1
        line = found[rid][0]
        assert set(REQUIRED_FIELDS) <= set(line)
        assert (line["status"], line["outcome"], line["error_type"]) == (status, "rejected", slug)
    assert found["nf-1"][0]["route"] == "/v1/no-such-route/123"
    # The path a client made up is no label value; the requests count as route="unmatched".
    assert "no-such-route" not in metrics
    assert 'route="unmatched"' in metrics
