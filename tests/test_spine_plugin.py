"""A plugin outside every package adds a settings section, two guards and a prompt resolver.

Each through the real gateway (uvicorn on a free port) and the official ``openai`` SDK.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from lanewise.core.errors import ConfigError
from lanewise.core.gateway.app import create_app
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.server import serve_in_thread
from lanewise.core.settings import load_settings

_spec = importlib.util.spec_from_file_location(
    "spine_plugin", Path(__file__).parent / "plugins" / "spine_plugin.py"
)
assert _spec is not None
assert _spec.loader is not None
spine_plugin = importlib.util.module_from_spec(_spec)
sys.modules["spine_plugin"] = spine_plugin
_spec.loader.exec_module(spine_plugin)


@pytest.fixture
def serve(tmp_path: Path) -> Callable[..., Any]:
    @contextmanager
    def run(toml: str = "") -> Iterator[tuple[openai.OpenAI, Any]]:
        config = tmp_path / "lanewise.toml"
        config.write_text(f'data_dir = "{tmp_path / "data"}"\n{toml}')
        plugin = spine_plugin.SpinePlugin()
        pm = get_plugin_manager([], extra=[plugin])
        settings = load_settings(config, sections=_sections(pm))
        app = create_app(settings, plugin_manager=pm)
        with serve_in_thread(app) as base:
            yield openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0), plugin

    return run


def _sections(pm: Any) -> Any:
    from lanewise.core.plugins import settings_sections

    return settings_sections(pm)


def test_hook_lanewise_register_settings_section_is_validated_in_one_error(tmp_path: Path) -> None:
    config = tmp_path / "lanewise.toml"
    config.write_text("[quota]\nmax_stream_words = 0\ncolour = 1\n")
    pm = get_plugin_manager([], extra=[spine_plugin.SpinePlugin()])
    with pytest.raises(ConfigError) as info:
        load_settings(config, sections=_sections(pm))
    assert "quota.max_stream_words: Input should be greater than or equal to 1" in info.value.detail
    assert "quota.colour: unknown key; allowed: max_stream_words, prompt_version" in (
        info.value.detail
    )
    # Without the plugin the section is unknown, and the message says which keys exist.
    with pytest.raises(ConfigError, match="quota: unknown key; allowed: data_dir"):
        load_settings(config, sections={})


def test_hook_lanewise_register_guards_refusal_is_a_429_naming_the_guard(serve) -> None:
    with serve('[quota]\nrefused_model = "words"\n') as (client, plugin):
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(
                model="words", messages=[{"role": "user", "content": "hi"}]
            )
        problem = info.value.body
        assert info.value.response.headers["content-type"] == "application/problem+json"
        assert info.value.response.headers["retry-after"] == "30"
    assert isinstance(problem, dict)
    assert problem["guard"] == "quota"
    assert "guard 'quota' refuses model 'words'" in problem["detail"]
    assert plugin.record.upstream_calls == []  # refused before the backend was contacted
    assert plugin.record.admitted == []  # quota admits first; word-cap never saw the call
    assert plugin.record.settled == []


def test_a_guard_cuts_a_stream_after_n_words_and_cancels_the_upstream(serve) -> None:
    with serve("[quota]\nmax_stream_words = 3\nwords = 50\n") as (client, plugin):
        stream = client.chat.completions.create(
            model="words", messages=[{"role": "user", "content": "count"}], stream=True
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.split() == ["w0", "w1", "w2"]
    last = chunks[-1]
    assert last.choices[0].finish_reason == "length"
    assert last.model_extra["lanewise"]["stopped_by"] == {"guard": "word-cap", "limit": 3}
    assert plugin.record.upstream_finished == [False]  # the backend's generator was closed
    settled = dict(plugin.record.settled)
    assert list(settled) == ["word-cap", "quota"]  # reverse of admission order
    assert {o.status for o in settled.values()} == {"ok"}
    assert {o.stopped_by for o in settled.values()} == {"word-cap"}


def test_every_admitted_call_settles_exactly_once(serve) -> None:
    with serve("[quota]\nmax_stream_words = 1000\nwords = 4\n") as (client, plugin):
        client.chat.completions.create(model="words", messages=[{"role": "user", "content": "a"}])
        list(
            client.chat.completions.create(
                model="words", messages=[{"role": "user", "content": "b"}], stream=True
            )
        )
    assert [g for g, _ in plugin.record.admitted] == ["quota", "word-cap"] * 2
    assert [g for g, _ in plugin.record.settled] == ["word-cap", "quota"] * 2
    assert all(o.status == "ok" for _, o in plugin.record.settled)
    assert [o.usage.completion_tokens for _, o in plugin.record.settled] == [4, 4, 4, 4]


def test_a_client_disconnect_mid_stream_settles_as_cancelled(serve) -> None:
    with serve("[quota]\nmax_stream_words = 1000\nwords = 400\n") as (client, plugin):
        base = str(client.base_url).rstrip("/")
        body = {"model": "words", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        with httpx.stream("POST", f"{base}/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if "w3" in line:
                    break  # hang up mid-stream
        _wait(lambda: len(plugin.record.settled) == 2)
    assert {o.status for _, o in plugin.record.settled} == {"cancelled"}
    assert plugin.record.upstream_finished == [False]


def test_hook_lanewise_resolve_prompt_supplies_the_rag_prompt_and_version(serve) -> None:
    with serve('[quota]\nprompt_version = "7"\nwords = 2\n') as (client, plugin):
        completion = client.chat.completions.create(
            model="words",
            messages=[{"role": "user", "content": "what are lanes"}],
            extra_body={"lanewise": {"retrieval": {"k": 2}}},
        )
    assert completion.model_extra["lanewise"]["prompt"] == {"name": "spine/rag", "version": "7"}
    [sent] = plugin.record.upstream_calls
    system = sent.messages[0]
    assert system.role == "system"
    assert system.content.startswith("Use these sources:\n[1] (lanes.md)")
    assert sent.prompt is not None
    assert (sent.prompt.name, sent.prompt.version) == ("spine/rag", "7")


def _wait(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    import time

    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
