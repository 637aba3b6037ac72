"""``/v1/embeddings`` under a hostile or careless tenant (issue 8, item 2), over real HTTP.

One tenant's bulk request must not hold another tenant's query embedding, the
gateway's deadline applies to embeddings, and the per-request limits name the
limit that was hit.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from lanewise.core.auth import hash_key
from lanewise.core.gateway.app import create_app
from lanewise.core.server import serve_in_thread
from lanewise.core.testing import poll

BULK, QUERY = "sk-bulk", "sk-query"
PROBLEM = "application/problem+json"


def auth(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def served(lanewise_settings, register_plugin):
    def run(**gateway_overrides):
        retrieval = gateway_overrides.pop("retrieval", {})
        settings = lanewise_settings(
            gateway={
                "api_keys": [
                    {"sha256": hash_key(BULK), "tenant": "bulk"},
                    {"sha256": hash_key(QUERY), "tenant": "query"},
                ],
                **gateway_overrides,
            },
            retrieval=retrieval,
        )
        app = create_app(settings, plugin_manager=register_plugin())
        return app, serve_in_thread(app)

    return run


def bulk_inputs(n: int) -> list[str]:
    return [f"bulk document {i}: " + "lanes keep every workload apart " * 6 for i in range(n)]


def wait_until(condition, what: str, timeout: float = 60) -> None:
    assert poll(condition, bool, timeout=timeout, interval=0.01), f"gave up waiting for {what}"


def test_a_query_is_not_held_behind_another_tenants_bulk_job(served):
    app, server = served()
    with server as base:
        embedder = app.state["components"].embedder()
        done: dict[str, httpx.Response] = {}

        def bulk():
            done["bulk"] = httpx.post(
                f"{base}/v1/embeddings",
                json={"model": "minilm", "input": bulk_inputs(384)},
                headers=auth(BULK),
                timeout=300,
            )

        thread = threading.Thread(target=bulk)
        thread.start()
        # The bulk job is queued with the embedder (its tokens counted, its batches waiting).
        wait_until(lambda: embedder._bulk.jobs, "the bulk job to reach the embedder")
        query = httpx.post(
            f"{base}/v1/embeddings",
            json={"model": "minilm", "input": "where do queries go?"},
            headers=auth(QUERY),
            timeout=300,
        )
        retrieve = httpx.post(
            f"{base}/v1/retrieve", json={"query": "lanes"}, headers=auth(QUERY), timeout=300
        )
        bulk_still_running = thread.is_alive()
        thread.join(300)
    assert query.status_code == 200, query.text
    assert retrieve.status_code == 200, retrieve.text
    assert bulk_still_running, "the query waited for the whole bulk job"
    assert done["bulk"].status_code == 200
    assert len(done["bulk"].json()["data"]) == 384


def test_bulk_tenants_take_turns(served):
    """A small bulk job submitted after a big one finishes first: batches alternate."""
    app, server = served()
    with server as base:
        embedder = app.state["components"].embedder()
        finished: list[str] = []

        def post(key: str, n: int) -> None:
            r = httpx.post(
                f"{base}/v1/embeddings",
                json={"model": "minilm", "input": bulk_inputs(n)},
                headers=auth(key),
                timeout=300,
            )
            assert r.status_code == 200
            finished.append(key)

        big = threading.Thread(target=post, args=(BULK, 384))
        big.start()
        wait_until(lambda: embedder._bulk.jobs, "the big job to reach the embedder")
        small = threading.Thread(target=post, args=(QUERY, 32))
        small.start()
        small.join(300)
        big.join(300)
    assert finished == [QUERY, BULK]


def test_the_deadline_applies_to_embeddings(served):
    _, server = served(request_timeout_s=0.2)
    with server as base:
        r = httpx.post(
            f"{base}/v1/embeddings",
            json={"model": "minilm", "input": bulk_inputs(1024)},
            headers=auth(BULK),
            timeout=300,
        )
        after = httpx.post(
            f"{base}/v1/embeddings",
            json={"model": "minilm", "input": "still serving"},
            headers=auth(QUERY),
            timeout=300,
        )
    assert r.status_code == 504, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("/upstream-timeout")
    assert "request_timeout_s" in r.json()["detail"]
    assert after.status_code in (200, 504)  # the abandoned job does not break the embedder


@pytest.mark.parametrize(
    ("retrieval", "inputs", "limit", "field"),
    [
        ({"max_embedding_inputs": 4}, ["a"] * 5, "retrieval.max_embedding_inputs", "input"),
        (
            {"max_embedding_input_tokens": 10},
            ["short", "one two three four five six seven eight nine ten eleven"],
            "retrieval.max_embedding_input_tokens",
            "input[1]",
        ),
        (
            {"max_embedding_request_tokens": 20},
            ["one two three four five six"] * 3,
            "retrieval.max_embedding_request_tokens",
            "input",
        ),
    ],
)
def test_input_limits_are_400_naming_the_limit(served, retrieval, inputs, limit, field):
    _, server = served(retrieval=retrieval)
    with server as base:
        r = httpx.post(
            f"{base}/v1/embeddings",
            json={"model": "minilm", "input": inputs},
            headers=auth(QUERY),
        )
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["limit"] == limit
    assert body["field"] == field
    assert str(body["max"]) in body["detail"]


@pytest.mark.parametrize(
    ("path", "field"),
    [("/v1/embeddings", b'"model":"minilm","input"'), ("/v1/retrieve", b'"query"')],
)
def test_bad_bodies_on_retrieval_routes(served, path, field):
    _, server = served()
    with server as base:
        utf8 = httpx.post(
            f"{base}{path}",
            content=b"{" + field + b':"\xff"}',
            headers={**auth(QUERY), "content-type": "application/json"},
        )
        text = httpx.post(
            f"{base}{path}",
            content=b"{" + field + b':"x"}',
            headers={**auth(QUERY), "content-type": "text/plain"},
        )
    assert utf8.status_code == 400
    assert utf8.json()["type"].endswith("/malformed-json")
    assert text.status_code == 415


def test_retrieve_does_not_coerce_k(served):
    _, server = served()
    with server as base:
        r = httpx.post(f"{base}/v1/retrieve", json={"query": "x", "k": "5"}, headers=auth(QUERY))
    assert r.status_code == 400
    assert r.json()["field"] == "k"
