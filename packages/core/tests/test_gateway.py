"""The gateway over real HTTP (uvicorn in a thread): health, schema, errors, ids, auth, SSE."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lanewise.core.auth import hash_key
from lanewise.core.hookspecs import hookimpl

PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"] == f"https://lanewise.dev/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in r.text
    assert body["request_id"] == r.headers["x-request-id"]
    return body


def sse_events(r: httpx.Response) -> list[Any]:
    events = []
    for line in r.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


class FailingCheck:
    name = "vector-db"

    async def check(self) -> str | None:
        return "connection refused on 127.0.0.1:1"


class FailingHealthPlugin:
    @hookimpl
    def lanewise_register_health_checks(self, register: Any, components: Any) -> None:
        register("vector-db", FailingCheck)


class HealthyCheck:
    name = "cache"

    async def check(self) -> str | None:
        return None


class HealthyPlugin:
    @hookimpl
    def lanewise_register_health_checks(self, register: Any, components: Any) -> None:
        register("cache", HealthyCheck)


def test_healthz(gateway):
    with gateway() as base:
        r = httpx.get(f"{base}/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz_200_when_every_check_passes(gateway):
    with gateway(plugins=(HealthyPlugin(),)) as base:
        r = httpx.get(f"{base}/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"cache": "ok"}, "failing": []}


def test_readyz_503_names_failing_checks(gateway):
    with gateway(plugins=(HealthyPlugin(), FailingHealthPlugin())) as base:
        r = httpx.get(f"{base}/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "not ready"
    assert body["failing"] == ["vector-db"]
    assert body["checks"] == {"cache": "ok", "vector-db": "connection refused on 127.0.0.1:1"}


def test_schema_and_openapi_json(gateway):
    with gateway() as base:
        html = httpx.get(f"{base}/schema")
        spec = httpx.get(f"{base}/schema/openapi.json")
    assert html.status_code == 200
    assert spec.status_code == 200
    doc = spec.json()
    assert doc["info"]["title"] == "lanewise gateway"
    for path in ("/healthz", "/readyz", "/v1/chat/completions", "/v1/models"):
        assert path in doc["paths"]


def test_malformed_json_is_problem(gateway):
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            content=b"{bad",
            headers={"content-type": "application/json"},
        )
    assert_problem(r, 400, "malformed-json")


def test_schema_violation_names_the_field(gateway):
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json={
                "model": "echo",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": 7,
            },
        )
        missing = httpx.post(f"{base}/v1/chat/completions", json={"model": "echo"})
    body = assert_problem(r, 400, "invalid-request")
    assert "temperature" in body["detail"]
    assert any("temperature" in str(e["field"]) for e in body["errors"])
    body = assert_problem(missing, 400, "invalid-request")
    assert body["errors"] == [
        {"field": "messages", "message": "Object missing required field `messages`"}
    ]
    assert "messages: Object missing required field" in body["detail"]


def test_oversize_body_is_413(gateway):
    with gateway(gateway={"max_body_bytes": 2048}) as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "x" * 5000}]},
        )
    body = assert_problem(r, 413, "payload-too-large")
    assert "gateway.max_body_bytes" in body["detail"]


def test_unknown_route_is_404_problem_with_request_id(gateway):
    with gateway() as base:
        r = httpx.get(f"{base}/v1/nope", headers={"x-request-id": "trace-404"})
    body = assert_problem(r, 404, "not-found")
    assert r.headers["x-request-id"] == "trace-404"
    assert "/v1/nope" in body["detail"]


def test_wrong_method_is_405_problem(gateway):
    with gateway() as base:
        r = httpx.get(f"{base}/v1/chat/completions")
    body = assert_problem(r, 405, "method-not-allowed")
    assert "GET" in body["detail"]


def test_internal_backend_error_is_500_without_exception_text(gateway, chat):
    with gateway(models={"echo": {"kind": "echo", "fail_after": 0}}) as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=chat())
    body = assert_problem(r, 500, "internal")
    assert "deadbeef" not in r.text
    assert "BackendBroke" not in r.text
    assert "request_id" in body["detail"]


def test_unknown_model_is_404_listing_models(gateway, chat):
    with gateway() as base:
        r = httpx.post(f"{base}/v1/chat/completions", json={**chat(), "model": "gpt-9"})
    body = assert_problem(r, 404, "not-found")
    assert body["available_models"] == ["echo"]
    assert "echo" in body["detail"]
    assert body["model"] == "gpt-9"


def test_request_id_is_echoed_or_minted(gateway):
    with gateway() as base:
        echoed = httpx.get(f"{base}/healthz", headers={"x-request-id": "abc-123"})
        minted = httpx.get(f"{base}/healthz")
        bad = httpx.get(f"{base}/healthz", headers={"x-request-id": "no spaces allowed"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(minted.headers["x-request-id"]) == 32
    assert bad.headers["x-request-id"] != "no spaces allowed"
    assert len(bad.headers["x-request-id"]) == 32


def test_chat_completion_non_streaming(gateway, chat, echo_plugin):
    with gateway() as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=chat("one two three"))
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "one two three"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert body["id"].startswith("chatcmpl-")


def test_models_lists_configured_models(gateway):
    with gateway(models={"a": {"kind": "echo"}, "b": {"kind": "echo"}}) as base:
        r = httpx.get(f"{base}/v1/models")
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == ["a", "b"]


def test_streaming_sse_with_usage(gateway, chat):
    with (
        gateway() as base,
        httpx.stream(
            "POST",
            f"{base}/v1/chat/completions",
            json=chat("alpha beta gamma", stream=True, stream_options={"include_usage": True}),
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(e["object"] == "chat.completion.chunk" for e in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "alpha beta gamma"
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finals] == ["stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


def test_streaming_without_include_usage_has_no_usage_chunk(gateway, chat):
    with (
        gateway() as base,
        httpx.stream("POST", f"{base}/v1/chat/completions", json=chat("a b", stream=True)) as r,
    ):
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])


def test_backend_error_mid_stream_ends_with_error_event(gateway, chat):
    with (
        gateway(models={"echo": {"kind": "echo", "fail_after": 2}}) as base,
        httpx.stream(
            "POST", f"{base}/v1/chat/completions", json=chat("one two three four", stream=True)
        ) as r,
    ):
        assert r.status_code == 200  # headers were sent before the failure
        events = sse_events(r)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e.get("choices"))
    assert text == "one two"
    assert events[-1]["error"] == {
        "type": "https://lanewise.dev/problems/internal",
        "message": "generation failed",
        "code": 500,
    }
    assert "deadbeef" not in json.dumps(events)
    assert "[DONE]" not in events


def test_lanewise_error_mid_stream_names_its_type(gateway, chat):
    model = {"kind": "echo", "fail_after": 1, "fail_with": "UpstreamError"}
    with (
        gateway(models={"echo": model}) as base,
        httpx.stream("POST", f"{base}/v1/chat/completions", json=chat("one two", stream=True)) as r,
    ):
        events = sse_events(r)
    error = events[-1]["error"]
    assert error["type"] == "https://lanewise.dev/problems/upstream-error"
    assert error["code"] == 502
    assert error["message"] == "upstream failed on purpose"


def test_api_keys_401_without_or_with_wrong_key(gateway, chat):
    keys = [{"sha256": hash_key("sk-good"), "tenant": "acme", "user": "ann"}]
    with gateway(gateway={"api_keys": keys}) as base:
        none = httpx.post(f"{base}/v1/chat/completions", json=chat())
        wrong = httpx.post(
            f"{base}/v1/chat/completions",
            json=chat(),
            headers={"authorization": "Bearer sk-bad"},
        )
        health = httpx.get(f"{base}/healthz")
    assert_problem(none, 401, "unauthorized")
    assert_problem(wrong, 401, "unauthorized")
    assert health.status_code == 200  # health is not behind auth


def test_api_key_sets_the_principal_tenant(gateway, chat, echo_plugin):
    keys = [
        {"sha256": hash_key("sk-good"), "tenant": "acme", "user": "ann", "priority": "batch"},
        {"sha256": hash_key("sk-other"), "tenant": "globex"},
    ]
    with gateway(gateway={"api_keys": keys}) as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json=chat(),
            headers={"authorization": "Bearer sk-good"},
        )
        r2 = httpx.post(
            f"{base}/v1/chat/completions", json=chat(), headers={"x-api-key": "sk-other"}
        )
    assert r.status_code == 200
    assert r2.status_code == 200
    first, second = echo_plugin.usage
    assert first.principal.tenant == "acme"
    assert first.principal.user == "ann"
    assert first.principal.priority == "batch"
    assert first.principal.key_id == hash_key("sk-good")[:12]
    assert second.principal.tenant == "globex"


def test_api_keys_are_stored_only_as_sha256(lanewise_settings):
    from lanewise.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        lanewise_settings(gateway={"api_keys": [{"sha256": "sk-plaintext", "tenant": "t"}]})
    assert "gateway.api_keys.0.sha256" in info.value.detail


def test_deeply_nested_json_is_400_not_500(gateway):
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            # Deep inside a field typed as free JSON, where no type check stops it early.
            content=b'{"model":"echo","messages":[{"role":"user","content":"x"}],'
            b'"lanewise":{"retrieval":{"filter":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}}}",
            headers={"content-type": "application/json"},
        )
    body = assert_problem(r, 400, "malformed-json")
    assert "too deeply" in body["detail"]


def test_empty_body_says_so(gateway):
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/chat/completions", content=b"", headers={"content-type": "application/json"}
        )
    body = assert_problem(r, 400, "invalid-request")
    assert body["detail"] == "the request body is missing or empty; send a JSON object"


def test_wrong_enum_value_names_the_field(gateway):
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "robot", "content": "x"}]},
        )
    body = assert_problem(r, 400, "invalid-request")
    assert "messages[0].role" in body["detail"]
    assert body["errors"][0]["field"] == "messages[0].role"


def test_missing_nested_field_is_named_with_its_path(gateway):
    with gateway() as base:
        r = httpx.post(
            f"{base}/v1/chat/completions", json={"model": "echo", "messages": [{"content": "x"}]}
        )
    body = assert_problem(r, 400, "invalid-request")
    assert body["errors"][0]["field"] == "messages[0].role"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"model": st.sampled_from(["echo", "nope", ""]), "messages": json_values},
        optional={"temperature": json_values, "stream": json_values, "max_tokens": json_values},
    ).map(lambda v: json.dumps(v).encode()),
)


def test_any_body_gets_a_problem_or_an_answer_never_a_500(gateway):
    with gateway() as base, httpx.Client(base_url=base) as client:

        @settings(suppress_health_check=[HealthCheck.too_slow])
        @given(body=bodies)
        def check(body: bytes) -> None:
            r = client.post(
                "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code in {200, 400, 404}, (body, r.text)
            if r.status_code != 200:
                assert r.headers["content-type"] == PROBLEM
                assert r.json()["type"].startswith("https://lanewise.dev/problems/")
            assert "Traceback" not in r.text

        check()


def test_oversize_chunked_body_without_content_length_is_413(gateway):
    def body():
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    with gateway(gateway={"max_body_bytes": 2048}) as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            content=body(),
            headers={"content-type": "application/json"},
        )
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "payload-too-large")


class HangingAndRaisingPlugin:
    @hookimpl
    def lanewise_register_health_checks(self, register: Any, components: Any) -> None:
        class Hangs:
            name = "hangs"

            async def check(self) -> str | None:
                await asyncio.sleep(60)
                return None

        class Raises:
            name = "raises"

            async def check(self) -> str | None:
                raise ConnectionRefusedError("port 1 refused")

        register("hangs", Hangs)
        register("raises", Raises)


def test_readyz_counts_hanging_and_raising_checks_as_failing(gateway):
    with gateway(plugins=(HangingAndRaisingPlugin(), HealthyPlugin())) as base:
        r = httpx.get(f"{base}/readyz", timeout=30)
    assert r.status_code == 503
    body = r.json()
    assert body["failing"] == ["hangs", "raises"]
    assert body["checks"]["hangs"] == "no answer within 2s"
    assert body["checks"]["raises"] == "ConnectionRefusedError: port 1 refused"
    assert body["checks"]["cache"] == "ok"


def test_backends_that_check_themselves_are_in_readyz(gateway, core_pm):
    class SelfChecking:
        name = "remote"

        async def generate(self, request):
            raise AssertionError

        def stream(self, request):
            raise AssertionError

        async def check(self) -> str | None:
            return "upstream 10.0.0.1:8001 unreachable"

    class Plugin:
        @hookimpl
        def lanewise_register_backends(self, register):
            register("remote", lambda ctx: SelfChecking())

    with gateway(plugins=(Plugin(),), models={"big": {"kind": "remote"}}) as base:
        r = httpx.get(f"{base}/readyz")
    assert r.status_code == 503
    assert r.json()["failing"] == ["model:big"]
    assert r.json()["checks"]["model:big"] == "upstream 10.0.0.1:8001 unreachable"


def test_cors_origins(gateway):
    with gateway(gateway={"cors_origins": ["https://app.example"]}) as base:
        allowed = httpx.options(
            f"{base}/v1/chat/completions",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
            },
        )
        other = httpx.get(f"{base}/healthz", headers={"origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_by_default(gateway):
    with gateway() as base:
        r = httpx.get(f"{base}/healthz", headers={"origin": "https://app.example"})
    assert "access-control-allow-origin" not in r.headers
