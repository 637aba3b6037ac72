"""Usage: counted with a tokenizer when the backend does not say; TTFT in the usage event."""

from __future__ import annotations

import json

import httpx
import pytest
from lanewise.core.errors import ConfigError
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import serve_in_thread
from lanewise.core.types import ChatRequest, Message
from lanewise.inference.openai_compat import OpenAICompatBackend
from lanewise.inference.tokens import (
    HFTokenCounter,
    RegexTokenCounter,
    find_packaged_tokenizer,
    token_counter,
)


class UsageRecorder:
    def __init__(self) -> None:
        self.events = []

    @hookimpl
    def lanewise_on_usage(self, event):
        self.events.append(event)


def test_regex_fallback_counts_words_and_punctuation():
    counter = RegexTokenCounter()
    assert counter.count("Hello, world!") == 4
    assert counter.count("") == 0


def test_packaged_tokenizer_is_used_when_installed():
    path = find_packaged_tokenizer()
    if path is None:
        pytest.skip("no MiniLM tokenizer.json is installed (lanewise-retrieval is absent)")
    counter = token_counter("auto")
    assert isinstance(counter, HFTokenCounter)
    assert counter.count("Hello, world!") == 4  # hello , world ! in WordPiece
    assert counter.count("tokenization") > 1  # sub-word pieces, unlike the regex fallback


def test_tokenizer_option_names_a_missing_file():
    with pytest.raises(ConfigError, match="tokenizer"):
        token_counter("/nonexistent/tokenizer.json")


def test_openai_backend_counts_usage_the_upstream_did_not_report():
    backend = OpenAICompatBackend(base_url="http://127.0.0.1:9/v1", counter=RegexTokenCounter())
    request = ChatRequest(model="m", messages=[Message(role="user", content="one two three")])
    usage = backend._usage(request, None, "four five")
    assert usage.prompt_tokens == 3 + 4  # words + per-message overhead
    assert usage.completion_tokens == 2
    reported = backend._usage(request, {"prompt_tokens": 11, "completion_tokens": 5}, "x")
    assert (reported.prompt_tokens, reported.completion_tokens) == (11, 5)


def test_usage_event_has_ttft_and_operation(lanewise_settings, register_plugin):
    recorder = UsageRecorder()
    app = create_app(lanewise_settings(), plugin_manager=register_plugin(recorder))
    with serve_in_thread(app) as base:
        chat = {"model": "extractive", "messages": [{"role": "user", "content": "Fast answers."}]}
        body = httpx.post(f"{base}/v1/chat/completions", json=chat).json()
        with httpx.stream(
            "POST",
            f"{base}/v1/completions",
            json={"model": "extractive", "prompt": "Fast answers.", "stream": True},
        ) as r:
            events = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: {")]
    assert [e.operation for e in recorder.events] == ["chat", "completion"]
    assert all(e.ttft_s is not None and e.ttft_s >= 0 for e in recorder.events)
    assert recorder.events[0].usage.completion_tokens == body["usage"]["completion_tokens"]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
