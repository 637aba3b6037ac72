"""Governance in a real gateway (uvicorn), called with httpx and the official openai SDK."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import serve_in_thread
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest, Usage

ADMIN = "admin-secret-for-tests"
TENANT_ADMIN = "acme-admin-secret"
STATIC = "static-key-from-core"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Words:
    """Streams ``w0 w1 ...`` slowly and records whether it was cut short."""

    name = "words"

    def __init__(self, count: int = 200) -> None:
        self.count = count
        self.ended: str | None = None
        self.emitted = 0

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        limit = request.sampling.max_tokens or self.count
        try:
            for i in range(min(limit, self.count)):
                await asyncio.sleep(0.002)
                self.emitted += 1
                yield ChatChunk(delta=f"w{i} ")
            prompt = sum(len(m.content.split()) for m in request.messages)
            yield ChatChunk(
                finish_reason="stop" if limit >= self.count else "length",
                usage=Usage(prompt_tokens=prompt, completion_tokens=min(limit, self.count)),
            )
            self.ended = "finished"
        except (asyncio.CancelledError, GeneratorExit):
            self.ended = "cancelled"
            raise

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        text, usage = "", Usage()
        async for chunk in self.stream(request):
            text += chunk.delta
            usage = chunk.usage or usage
        return ChatCompletion(model=request.model, text=text, finish_reason="stop", usage=usage)


class WordsPlugin:
    def __init__(self) -> None:
        self.backend = Words()

    @hookimpl
    def lanewise_register_backends(self, register: Any) -> None:
        register("words", lambda ctx: self.backend, default=True)


@pytest.fixture
def words() -> WordsPlugin:
    return WordsPlugin()


class CostSpy:
    """Reads the request's cost where the observe lane would: in its usage event."""

    def __init__(self) -> None:
        self.costs: list[float | None] = []

    @hookimpl
    def lanewise_on_usage(self, event: Any) -> None:
        from lanewise.core.context import current_request

        context = current_request()
        self.costs.append(context.attributes.get("lanewise.cost_usd") if context else None)


@pytest.fixture
def spy() -> CostSpy:
    return CostSpy()


@pytest.fixture
def gateway(
    lanewise_settings: Callable[..., Any],
    register_plugin: Callable[..., Any],
    words: WordsPlugin,
    spy: CostSpy,
) -> Callable[..., Any]:
    @contextmanager
    def run(**governance: Any) -> Iterator[str]:
        section = {
            "admin_keys": [{"sha256": sha(ADMIN)}, {"sha256": sha(TENANT_ADMIN), "tenant": "acme"}],
            "prices": {
                "words": {
                    "tokenizer": "whitespace",
                    "input_per_million": 1.0,
                    "output_per_million": 2.0,
                }
            },
            **governance,
        }
        settings = lanewise_settings(
            governance=section,
            gateway={"api_keys": [{"sha256": sha(STATIC), "tenant": "static"}]},
        )
        pm = register_plugin(words, spy, allowlist=["governance"])
        with serve_in_thread(create_app(settings, plugin_manager=pm)) as base:
            yield base

    return run


def admin(base: str, method: str, path: str, token: str = ADMIN, **kw: Any) -> httpx.Response:
    return httpx.request(
        method, f"{base}/v1/admin{path}", headers={"authorization": f"Bearer {token}"}, **kw
    )


def new_key(base: str, **body: Any) -> str:
    response = admin(base, "POST", "/keys", json={"tenant": "acme", "user": "ann", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


MESSAGES = [{"role": "user", "content": "count for me please"}]


def test_keys_from_the_admin_api_authenticate_and_revoke(gateway: Any) -> None:
    with gateway() as base:
        key = new_key(base, name="ci")
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        reply = client.chat.completions.create(model="words", messages=MESSAGES, max_tokens=3)
        assert reply.choices[0].message.content == "w0 w1 w2 "
        # Static keys from [[gateway.api_keys]] keep working.
        static = openai.OpenAI(base_url=f"{base}/v1", api_key=STATIC, max_retries=0)
        static.chat.completions.create(model="words", messages=MESSAGES, max_tokens=1)
        listed = admin(base, "GET", "/keys").json()["data"]
        (mine,) = [k for k in listed if k["name"] == "ci"]
        assert "key" not in mine
        assert key not in json.dumps(listed)
        assert admin(base, "DELETE", f"/keys/{mine['id']}").json()["status"] == "revoked"
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="words", messages=MESSAGES, max_tokens=1)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(
                base_url=f"{base}/v1", api_key="lw_bogus_key", max_retries=0
            ).models.list()


def test_tenant_admins_see_and_touch_only_their_tenant(gateway: Any) -> None:
    with gateway() as base:
        theirs = admin(base, "POST", "/keys", json={"tenant": "globex"}).json()
        new_key(base)
        mine = admin(base, "GET", "/keys", token=TENANT_ADMIN).json()["data"]
        assert {k["tenant"] for k in mine} == {"acme"}
        assert admin(base, "GET", "/keys?tenant=globex", token=TENANT_ADMIN).status_code == 403
        assert admin(base, "DELETE", f"/keys/{theirs['id']}", token=TENANT_ADMIN).status_code == 404
        refused = admin(
            base,
            "PUT",
            "/budgets",
            token=TENANT_ADMIN,
            json={"scope": "tenant", "subject": "globex", "limit": 1},
        )
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        for tenant in ("acme", "globex"):
            made = admin(
                base, "PUT", "/budgets", json={"scope": "tenant", "subject": tenant, "limit": 9}
            )
            assert made.status_code == 200, made.text
        seen = admin(base, "GET", "/budgets", token=TENANT_ADMIN).json()["data"]
        assert [b["subject"] for b in seen] == ["acme"]
        assert len(admin(base, "GET", "/budgets").json()["data"]) == 2
        # A model-calling key is not an admin key.
        key = new_key(base)
        assert admin(base, "GET", "/keys", token=key).status_code == 403


def test_out_of_scope_model_is_a_permission_error(gateway: Any) -> None:
    with gateway() as base:
        key = new_key(base, models=["other-*"])
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(model="words", messages=MESSAGES, max_tokens=1)
        assert refused.value.body["type"].endswith("/forbidden")  # type: ignore[index]
        routed = new_key(base, routes=["/v1/models"])
        routed_client = openai.OpenAI(base_url=f"{base}/v1", api_key=routed, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError) as off_route:
            routed_client.chat.completions.create(model="words", messages=MESSAGES, max_tokens=1)
        assert off_route.value.body["route"] == "/v1/chat/completions"  # type: ignore[index]
        assert routed_client.models.list().data  # the route it may call
        batch_only = new_key(base, priorities=["batch"])
        headers = {"authorization": f"Bearer {batch_only}"}
        body = {"model": "words", "messages": MESSAGES, "max_tokens": 1}
        url = f"{base}/v1/chat/completions"
        asked = httpx.post(url, json=body, headers={**headers, "x-lanewise-priority": "batch"})
        assert asked.status_code == 200, asked.text
        refused = httpx.post(
            url, json=body, headers={**headers, "x-lanewise-priority": "interactive"}
        )
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["priority"] == "interactive"


def test_over_budget_is_a_rate_limit_error_naming_the_budget(gateway: Any) -> None:
    with gateway() as base:
        key = new_key(base)
        set_budget = admin(
            base,
            "PUT",
            "/budgets",
            json={"scope": "user", "subject": "acme/ann", "window": "day", "limit": 60},
        )
        assert set_budget.status_code == 200, set_budget.text
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        client.chat.completions.create(model="words", messages=MESSAGES, max_tokens=30)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="words", messages=MESSAGES, max_tokens=30)
        body: Any = refused.value.body
        assert body["type"].endswith("/budget-exceeded")
        assert (body["scope"], body["window"], body["limit"]) == ("user", "day", 60)
        assert body["used"] + body["remaining"] == 60
        assert body["budget"]["subject"] == "acme/ann"
        assert int(refused.value.response.headers["retry-after"]) >= 1
        mine = httpx.get(f"{base}/v1/budgets", headers={"authorization": f"Bearer {key}"}).json()
        (budget,) = mine["data"]
        assert budget["limit"] == 60
        assert 0 < budget["used"] <= 60


def test_a_stream_is_cut_at_the_budget_and_the_upstream_cancelled(
    gateway: Any, words: WordsPlugin
) -> None:
    with gateway(budgets=[{"scope": "tenant", "window": "day", "limit": 40}]) as base:
        key = new_key(base)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        stream = client.chat.completions.create(
            model="words", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finishes = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
        assert finishes == ["length"]
        extension = [
            getattr(c, "lanewise", None) or (c.model_extra or {}).get("lanewise") for c in chunks
        ]
        errors = [e["error"] for e in extension if e and "error" in e]
        assert errors
        assert errors[0]["budget"]["scope"] == "tenant"
        assert 0 < len(text.split()) < 40
        assert words.backend.ended == "cancelled"
        assert words.backend.emitted < words.backend.count
        spent = httpx.get(f"{base}/v1/budgets", headers={"authorization": f"Bearer {key}"}).json()
        assert spent["data"][0]["used"] <= 40


def test_rpm_limit_is_a_rate_limit_error(gateway: Any) -> None:
    with gateway(rate_limits=[{"scope": "key", "rpm": 2}]) as base:
        key = new_key(base)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        for _ in range(2):
            client.chat.completions.create(model="words", messages=MESSAGES, max_tokens=1)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="words", messages=MESSAGES, max_tokens=1)
        assert refused.value.body["type"].endswith("/rate-limited")  # type: ignore[index]


def test_the_requests_cost_reaches_its_usage_event(gateway: Any, spy: CostSpy) -> None:
    with gateway() as base:
        key = new_key(base)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        reply = client.chat.completions.create(model="words", messages=MESSAGES, max_tokens=5)
        usage = reply.usage
        assert usage is not None
        expected = (usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1e6
        assert spy.costs[-1] == pytest.approx(expected)


def test_the_admin_routes_document_their_refusals_in_the_schema(gateway: Any) -> None:
    with gateway() as base:
        paths = httpx.get(f"{base}/schema/openapi.json").json()["paths"]
        revoke = paths["/v1/admin/keys/{key_id}"]["delete"]
        for status in ("401", "403", "404"):
            assert "application/problem+json" in revoke["responses"][status]["content"]
        assert revoke["security"]
        # What it says: an unknown key is a 404 problem, a model-calling key a 403.
        missing = admin(base, "DELETE", "/keys/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert admin(base, "DELETE", "/keys/nope", token=new_key(base)).status_code == 403
