"""Request observers: what the gateway's middleware records on the context, over real HTTP."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from typing import Any

import httpx
from lanewise.core.auth import hash_key
from lanewise.core.context import RequestContext, current_request
from lanewise.core.gateway.observers import problem_type
from lanewise.core.hookspecs import hookimpl
from lanewise.core.testing import poll


class Recorder:
    """Registers itself as a request observer and keeps a copy of every ended context."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.started: list[str] = []
        self.ended: list[RequestContext] = []
        self.current_at_end: list[RequestContext | None] = []
        self.observers: list[Any] = []

    @hookimpl
    def lanewise_configure_gateway(self, app_config: Any, settings: Any, components: Any) -> None:
        components.request_observers.append(self)
        self.observers = components.request_observers

    def request_started(self, context: RequestContext, scope: Any) -> None:
        self.started.append(scope["path"])
        context.attributes["seen_by"] = "recorder"
        if self.fail:
            raise RuntimeError("observer broke")

    def request_ended(self, context: RequestContext, scope: Any) -> None:
        self.current_at_end.append(current_request())
        # A copy: the context is final now, later requests must not change what we saw.
        self.ended.append(replace(context, attributes=dict(context.attributes)))
        if self.fail:
            raise RuntimeError("observer broke")


def last(recorder: Recorder, n: int = 1) -> RequestContext:
    poll(lambda: len(recorder.ended), lambda seen: seen >= n, timeout=5.0)
    return recorder.ended[n - 1]


def test_a_completed_request(gateway, chat):
    recorder = Recorder()
    with gateway(plugins=(recorder,)) as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=chat())
    assert r.status_code == 200
    seen = last(recorder)
    assert (seen.response.status, seen.response.stream, seen.response.body_done) == (
        200,
        False,
        True,
    )
    assert not seen.response.disconnected
    assert (seen.response.error_type, seen.response.failure) == (None, None)
    assert seen.request_id == r.headers["x-request-id"]
    assert seen.attributes["seen_by"] == "recorder"  # what start() set is on the context
    assert recorder.current_at_end == [None]  # ended after the context was left
    assert recorder.started == ["/v1/chat/completions"]  # started once, for the routed path


def test_a_stream_and_an_error_mid_stream(gateway, chat):
    recorder = Recorder()
    with gateway(
        plugins=(recorder,),
        models={
            "echo": {"kind": "echo"},
            "broken": {"kind": "echo", "fail_after": 1, "fail_with": "UpstreamError"},
        },
    ) as base:
        ok = httpx.post(f"{base}/v1/chat/completions", json=chat("a b c", stream=True))
        bad = httpx.post(
            f"{base}/v1/chat/completions", json=chat("a b c", stream=True, model="broken")
        )
    assert ok.status_code == bad.status_code == 200
    first, second = last(recorder, 1), last(recorder, 2)
    assert (
        first.response.status,
        first.response.stream,
        first.response.body_done,
        first.response.error_type,
    ) == (
        200,
        True,
        True,
        None,
    )
    assert (second.response.stream, second.response.body_done, second.response.error_type) == (
        True,
        True,
        "upstream-error",
    )


def test_problem_responses_carry_their_type(gateway, chat):
    recorder = Recorder()
    keys = [{"sha256": hash_key("sk-good"), "tenant": "acme"}]
    with gateway(plugins=(recorder,), gateway={"api_keys": keys}) as base:
        unauthorized = httpx.post(f"{base}/v1/chat/completions", json=chat())
        unknown_model = httpx.post(
            f"{base}/v1/chat/completions",
            json=chat(model="nope"),
            headers={"authorization": "Bearer sk-good"},
        )
        invalid = httpx.post(
            f"{base}/v1/chat/completions",
            content=b"{not json",
            headers={"authorization": "Bearer sk-good", "content-type": "application/json"},
        )
    assert [unauthorized.status_code, unknown_model.status_code, invalid.status_code] == [
        401,
        404,
        400,
    ]
    seen = [last(recorder, i) for i in (1, 2, 3)]
    slugs = [r.json()["type"].rsplit("/", 1)[-1] for r in (unauthorized, unknown_model, invalid)]
    assert slugs[0] == "unauthorized"
    assert [
        (c.response.status, c.response.error_type, c.response.body_done, c.response.failure)
        for c in seen
    ] == [
        (401, slugs[0], True, None),
        (404, slugs[1], True, None),
        (400, slugs[2], True, None),
    ]


def test_a_crash_in_the_route_is_a_failure(gateway, chat):
    recorder = Recorder()
    with gateway(plugins=(recorder,), models={"echo": {"kind": "echo", "fail_after": 0}}) as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=chat())
    assert r.status_code == 500
    seen = last(recorder)
    assert (seen.response.status, seen.response.error_type) == (500, "internal")


def test_a_client_that_goes_away_mid_stream(gateway, chat):
    recorder = Recorder()
    with gateway(plugins=(recorder,), models={"echo": {"kind": "echo", "delay_s": 0.2}}) as base:
        host, port = base.removeprefix("http://").split(":")
        body = httpx.Request(
            "POST", f"{base}/v1/chat/completions", json=chat("one two three four five", stream=True)
        )
        raw = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body.content)}\r\n\r\n"
        ).encode() + body.content
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(raw)
            assert b"200" in sock.recv(4096)
            time.sleep(0.3)
        seen = last(recorder)
    assert (seen.response.status, seen.response.stream, seen.response.body_done) == (
        200,
        True,
        False,
    )


def test_a_failing_observer_does_not_fail_the_request(gateway, chat):
    recorder = Recorder(fail=True)
    with gateway(plugins=(recorder,)) as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=chat())
    assert r.status_code == 200
    assert last(recorder).response.status == 200


def test_no_observer_leaves_the_context_untouched(gateway, chat):
    seen: list[RequestContext] = []

    class Peek:
        @hookimpl
        def lanewise_on_usage(self, event: Any) -> None:
            context = current_request()
            assert context is not None
            seen.append(context)

    with gateway(plugins=(Peek(),)) as base:
        assert httpx.post(f"{base}/v1/chat/completions", json=chat()).status_code == 200
    assert len(seen) == 1
    assert seen[0].response is None


def test_problem_type_is_read_from_the_body():
    body = b'{"type":"https://lanewise.dev/problems/budget-exceeded","status":429}'
    assert problem_type(body, b'"type":"') == "budget-exceeded"
    assert problem_type(b'{"status":429}', b'"type":"') is None
    assert problem_type(b'{"type":"', b'"type":"') is None


def test_the_documented_observer_example_works(gateway, chat):
    """docs/hooks.md's request-observer example, registered as a plugin, counts errors."""
    import types
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[3] / "docs" / "hooks.md").read_text()
    block = next(b for b in docs.split("```python")[1:] if "SlowRequests" in b).split("```")[0]
    module = types.ModuleType("observer_example")
    exec(compile(block, "docs/hooks.md", "exec"), module.__dict__)
    recorder = Recorder()  # registered after the example: it sees the request end later
    with gateway(plugins=(module, recorder)) as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=chat(model="nope"))
    assert r.status_code == 404
    last(recorder)
    example = next(o for o in recorder.observers if isinstance(o, module.SlowRequests))
    assert example.errors == {r.json()["type"].rsplit("/", 1)[-1]: 1}
