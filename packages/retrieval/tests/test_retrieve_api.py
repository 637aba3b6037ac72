"""``/v1/retrieve`` and RAG over real HTTP, on the embedded store and the MiniLM embedder.

The outage cases use the pgvector store pointed at a socket where no server
listens: a real connection failure, not a simulated one.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from lanewise.core.auth import hash_key
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import serve_in_thread

ACME, GLOBEX = "sk-acme", "sk-globex"
DOCS = {
    "acme": [
        ("a1", "Lanewise routes every AI workload to its own lane.", {"lang": "en", "year": 2024}),
        ("a2", "The retrieval lane embeds queries with MiniLM on onnxruntime.", {"lang": "en"}),
        ("a3", "Der Gateway zählt Token pro Mandant.", {"lang": "de", "year": 2023}),
        ("a4", "Celery workers run ingestion jobs on Redis queues.", {"lang": "en"}),
    ],
    "globex": [
        ("g1", "Globex secret: the retrieval lane roadmap for MiniLM embeddings.", {"lang": "en"}),
    ],
}


class StageRecorder:
    def __init__(self) -> None:
        self.events = []

    @hookimpl
    def lanewise_on_stage(self, event):
        self.events.append(event)

    def stages(self, request_id):
        return [e.stage for e in self.events if e.request_id == request_id]


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def api_keys():
    return [
        {"sha256": hash_key(ACME), "tenant": "acme"},
        {"sha256": hash_key(GLOBEX), "tenant": "globex"},
    ]


async def index(container):
    embedder, store = container.embedder(), container.vector_store()
    for tenant, docs in DOCS.items():
        vectors = await embedder.embed([text for _, text, _ in docs])
        await store.upsert(
            tenant=tenant,
            ids=[d[0] for d in docs],
            vectors=vectors,
            texts=[d[1] for d in docs],
            metadata=[{**d[2], "source": f"{d[0]}.md"} for d in docs],
        )


@pytest.fixture
def gateway(lanewise_settings, register_plugin):
    recorder = StageRecorder()
    settings = lanewise_settings(
        gateway={"api_keys": api_keys()}, retrieval={"max_k": 10}, default_model="extractive"
    )
    app = create_app(settings, plugin_manager=register_plugin(recorder))
    container = app.state["components"]
    asyncio.run(index(container))
    with serve_in_thread(app) as base:
        yield base, recorder, container


def post(base, body, key=ACME, path="/v1/retrieve", **headers):
    return httpx.post(f"{base}{path}", json=body, headers={**auth(key), **headers}, timeout=60)


def test_hits_carry_text_metadata_score_and_source(gateway):
    base, _, _ = gateway
    r = post(base, {"query": "which model embeds queries?", "k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tenant"] == "acme"
    first = body["data"][0]
    assert first["id"] == "a2"
    assert first["text"].startswith("The retrieval lane embeds")
    assert first["metadata"]["lang"] == "en"
    assert first["source"] == "a2.md"
    assert 0 < first["score"] <= 1
    assert len(body["data"]) == 2


def test_tenant_comes_from_the_key_never_the_body(gateway):
    base, _, _ = gateway
    acme = post(base, {"query": "MiniLM embeddings roadmap", "k": 10}).json()["data"]
    assert all(h["id"].startswith("a") for h in acme)
    globex = post(base, {"query": "MiniLM embeddings roadmap", "k": 10}, key=GLOBEX).json()
    assert [h["id"] for h in globex["data"]] == ["g1"]
    smuggled = post(base, {"query": "roadmap", "tenant": "globex"})
    assert smuggled.status_code == 400
    assert "tenant" in smuggled.text


def test_filter_is_applied(gateway):
    base, _, _ = gateway
    r = post(base, {"query": "tokens", "k": 10, "filter": {"field": "lang", "eq": "de"}})
    assert [h["id"] for h in r.json()["data"]] == ["a3"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "   "}, "query"),
        ({"query": "x", "k": 11}, "k"),
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x", "filter": {"field": "lang", "between": 1}}, "filter"),
        ({"query": "x", "filter": {"field": "bad name", "eq": 1}}, "filter"),
    ],
)
def test_bad_requests_name_the_field(gateway, body, field):
    base, _, _ = gateway
    r = post(base, body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field


def test_each_hit_says_which_path_found_it(gateway):
    base, recorder, _ = gateway
    lexical = post(base, {"query": "Celery Redis", "k": 3, "mode": "lexical"}).json()["data"]
    assert [(h["id"], h["lexical_rank"], h["dense_rank"]) for h in lexical] == [("a4", 1, None)]
    dense = post(base, {"query": "Celery Redis", "k": 2, "mode": "dense"}).json()["data"]
    assert [h["dense_rank"] for h in dense] == [1, 2]
    assert all(h["lexical_rank"] is None for h in dense)
    r = post(
        base,
        {"query": "Celery Redis", "k": 4, "fusion": "weighted", "alpha": 0.2},
        **{"X-Request-ID": "hybrid"},
    )
    hybrid = r.json()["data"]
    assert hybrid[0]["id"] == "a4"
    assert hybrid[0]["lexical_rank"] == 1
    assert hybrid[0]["dense_rank"] is not None
    assert all(h["lexical_rank"] is None for h in hybrid[1:])  # no other text says either word
    (search,) = [e for e in recorder.events if e.request_id == "hybrid" and e.stage == "search"]
    assert search.attributes["lanewise.retrieval.mode"] == "hybrid"
    assert search.attributes["lanewise.retrieval.fusion"] == "weighted"


def test_the_default_fusion_is_gated_and_rag_accepts_it(gateway):
    base, recorder, _ = gateway
    r = post(base, {"query": "Celery Redis", "k": 2}, **{"X-Request-ID": "gated"})
    # BM25 finds one chunk alone (a clear winner): the gate opens and it comes first.
    first = r.json()["data"][0]
    assert (first["id"], first["lexical_rank"]) == ("a4", 1)
    (search,) = [e for e in recorder.events if e.request_id == "gated" and e.stage == "search"]
    assert search.attributes["lanewise.retrieval.fusion"] == "gated"
    body = {
        "model": "extractive",
        "messages": [{"role": "user", "content": "Celery Redis"}],
        "lanewise": {"retrieval": {"k": 2, "mode": "hybrid", "fusion": "gated", "alpha": 0.9}},
    }
    rag = post(base, body, path="/v1/chat/completions")
    assert rag.status_code == 200, rag.text
    assert rag.json()["lanewise"]["citations"][0]["id"] == "a4"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "mode": "sparse"}, "mode"),
        ({"query": "x", "fusion": "max"}, "fusion"),
        ({"query": "x", "alpha": 2}, "alpha"),
    ],
)
def test_bad_search_options_are_400_naming_the_field(gateway, body, field):
    base, _, _ = gateway
    r = post(base, body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field


def test_k_above_max_names_the_limit(gateway):
    base, _, _ = gateway
    problem = post(base, {"query": "x", "k": 11}).json()
    assert problem["limit"] == 10
    assert "retrieval.max_k" in problem["detail"]


def test_unauthenticated_is_401(gateway):
    base, _, _ = gateway
    assert post(base, {"query": "x"}, key="nope").status_code == 401


def test_stage_events_and_the_result_cache(gateway):
    base, recorder, container = gateway
    body = {"query": "Which lane runs Celery?", "k": 2}
    post(base, body, **{"X-Request-ID": "first"})
    assert recorder.stages("first") == ["cache", "embed", "search", "rerank"]
    post(base, body, **{"X-Request-ID": "second"})
    (cached,) = [e for e in recorder.events if e.request_id == "second"]
    assert cached.stage == "cache"
    assert cached.attributes["lanewise.cache.result"] == "hit"
    assert cached.attributes["lanewise.cache.result.hits"] == 1

    # A write bumps the index version: results miss, the query embedding still hits.
    async def write():
        store, embedder = container.vector_store(), container.embedder()
        (vec,) = await embedder.embed(["Celery runs in the ingest lane."])
        await store.upsert(
            tenant="acme",
            ids=["a5"],
            vectors=[vec],
            texts=["Celery runs in the ingest lane."],
            metadata=[{}],
        )

    asyncio.run(write())
    r = post(base, body, **{"X-Request-ID": "third"})
    third = {e.stage: e for e in recorder.events if e.request_id == "third"}
    assert third["cache"].attributes["lanewise.cache.result"] == "miss"
    assert third["embed"].attributes["lanewise.cache.embedding"] == "hit"
    assert "a5" in [h["id"] for h in r.json()["data"]]
    # Another tenant's identical query shares the embedding but not the results.
    post(base, body, key=GLOBEX, **{"X-Request-ID": "fourth"})
    fourth = {e.stage: e for e in recorder.events if e.request_id == "fourth"}
    assert fourth["cache"].attributes["lanewise.cache.result"] == "miss"
    assert fourth["embed"].attributes["lanewise.cache.embedding"] == "hit"


def test_rag_alias_answers_with_citations(gateway):
    base, recorder, _ = gateway
    r = post(
        base,
        {"model": "rag/extractive", "messages": [{"role": "user", "content": "What runs Celery?"}]},
        path="/v1/chat/completions",
        **{"X-Request-ID": "rag"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "rag/extractive"
    citations = body["lanewise"]["citations"]
    sources = [c["source"] for c in citations]
    assert "a4.md" in sources
    # Each citation says which search path found it (hybrid by default: at least one).
    assert all(c["dense_rank"] or c["lexical_rank"] for c in citations)
    a4 = next(c for c in citations if c["source"] == "a4.md")
    assert a4["lexical_rank"] == 1  # the only text with "celery"
    assert all(s.startswith("a") for s in sources)
    stages = recorder.stages("rag")
    for stage in ("retrieve", "embed", "search", "rerank", "prompt", "generate"):
        assert stage in stages


def test_rag_request_chooses_the_search_mode(gateway):
    base, _, _ = gateway
    body = {
        "model": "extractive",
        "messages": [{"role": "user", "content": "Celery Redis"}],
        "lanewise": {"retrieval": {"k": 2, "mode": "lexical"}},
    }
    r = post(base, body, path="/v1/chat/completions")
    assert r.status_code == 200, r.text
    citations = r.json()["lanewise"]["citations"]
    assert [(c["id"], c["lexical_rank"], c["dense_rank"]) for c in citations] == [("a4", 1, None)]
    bad = post(
        base, {**body, "lanewise": {"retrieval": {"mode": "sparse"}}}, path="/v1/chat/completions"
    )
    assert bad.status_code == 400
    assert bad.json()["field"] == "lanewise.retrieval.mode"  # refused at the edge, by its path


def test_rag_extension_field_streams_citations(gateway):
    base, _, _ = gateway
    body = {
        "model": "extractive",
        "stream": True,
        "messages": [{"role": "user", "content": "How are queries embedded?"}],
        "lanewise": {"retrieval": {"k": 2, "filter": {"field": "lang", "eq": "en"}}},
    }
    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", json=body, headers=auth(ACME), timeout=60
    ) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    assert '"citations"' in text
    assert "a2.md" in text


@pytest.fixture
def broken_store_gateway(lanewise_settings, tmp_path):
    settings = lanewise_settings(
        gateway={"api_keys": api_keys()},
        default_model="extractive",
        retrieval={
            "vector_store": {
                "kind": "pgvector",
                "url": f"postgresql://nobody@/nothing?host={tmp_path}",
                "connect_timeout_s": 1,
            }
        },
    )
    with serve_in_thread(create_app(settings)) as base:
        yield base


def test_store_outage_is_503_with_retry_after(broken_store_gateway):
    r = post(broken_store_gateway, {"query": "anything"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert r.headers["content-type"] == "application/problem+json"


def test_store_outage_can_degrade(broken_store_gateway):
    r = post(broken_store_gateway, {"query": "anything", "degrade": True})
    assert r.status_code == 200
    assert r.json()["degraded"] is True
    assert r.json()["data"] == []


def test_rag_degrades_to_generation_without_context(broken_store_gateway):
    chat = {"model": "rag/extractive", "messages": [{"role": "user", "content": "hello?"}]}
    failed = post(broken_store_gateway, chat, path="/v1/chat/completions")
    assert failed.status_code == 503
    chat["lanewise"] = {"retrieval": {"degrade": True}}
    r = post(broken_store_gateway, chat, path="/v1/chat/completions")
    assert r.status_code == 200, r.text
    assert r.json()["lanewise"]["retrieval"]["degraded"] is True
    chat["stream"] = True
    with httpx.stream(
        "POST", f"{broken_store_gateway}/v1/chat/completions", json=chat, headers=auth(ACME)
    ) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["x-lanewise-retrieval"] == "degraded"
        streamed.read()


def test_deadline_is_504_or_degrades(lanewise_settings):
    # A deadline no embedding can meet: the first query always has to embed.
    settings = lanewise_settings(gateway={"request_timeout_s": 0.000001})
    with serve_in_thread(create_app(settings)) as base:
        r = httpx.post(f"{base}/v1/retrieve", json={"query": "anything"}, timeout=60)
        assert r.status_code == 504, r.text
        assert r.json()["type"].endswith("/upstream-timeout")
        r = httpx.post(
            f"{base}/v1/retrieve", json={"query": "something else", "degrade": True}, timeout=60
        )
        assert r.status_code == 200
        assert r.json()["degraded"] is True
