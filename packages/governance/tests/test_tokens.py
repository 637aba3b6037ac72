"""Prompt counts: the model's own chat template when it ships one, never a download."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lanewise.core.errors import ConfigError
from lanewise.core.types import Message
from lanewise.governance.tokens import (
    CACHED_TEXT_CHARS,
    CACHED_TEXTS,
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    TokenizerJsonCounter,
    WhitespaceCounter,
    counter_for,
    prompt_tokens,
    shipped_tokenizer,
)
from tokenizers import Tokenizer

MESSAGES = (
    Message(role="system", content="Answer from the sources."),
    Message(role="user", content="Where does the batch pool run?"),
)
TEMPLATE = (
    "{% for m in messages %}### {{ m.role }} turn ###\n{{ m.content }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}### assistant turn ###\n{% endif %}"
)


@pytest.fixture
def tokenizer_json(tmp_path: Path) -> Path:
    shipped = shipped_tokenizer()
    assert shipped is not None, (
        "the retrieval lane's MiniLM tokenizer.json is part of the workspace"
    )
    return Path(shutil.copy(shipped, tmp_path / "tokenizer.json"))


def test_with_a_chat_template_the_count_is_the_rendered_prompt(tokenizer_json: Path) -> None:
    (tokenizer_json.parent / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": TEMPLATE, "eos_token": {"content": "[SEP]"}})
    )
    counter = TokenizerJsonCounter(tokenizer_json)
    rendered = (
        "### system turn ###\nAnswer from the sources.[SEP]\n"
        "### user turn ###\nWhere does the batch pool run?[SEP]\n### assistant turn ###\n"
    )
    reference = Tokenizer.from_file(str(tokenizer_json))
    reference.no_padding()  # MiniLM's file pads to 128 for the embedder
    expected = len(reference.encode(rendered, add_special_tokens=False).ids)
    assert prompt_tokens(counter, MESSAGES) == expected
    estimate = (
        sum(counter.count(m.content) for m in MESSAGES) + 2 * MESSAGE_OVERHEAD + REPLY_PRIMING
    )
    assert expected != estimate  # the template, not the per-message estimate, was counted


def test_without_a_template_each_message_adds_the_documented_overhead(
    tokenizer_json: Path,
) -> None:
    counter = TokenizerJsonCounter(tokenizer_json)
    assert counter.chat_template is None
    contents = sum(counter.count(m.content) for m in MESSAGES)
    assert prompt_tokens(counter, MESSAGES) == contents + 2 * MESSAGE_OVERHEAD + REPLY_PRIMING
    # "Answer from the sources ." and "Where does the batch pool run ?"
    assert prompt_tokens(WhitespaceCounter(), MESSAGES) == 5 + 7 + 2 * MESSAGE_OVERHEAD + 3


def test_a_missing_tokenizer_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        counter_for(str(tmp_path / "nope.json"))


_SHIPPED = shipped_tokenizer()


def _counter_and_plain_tokenizer() -> tuple[TokenizerJsonCounter, Tokenizer]:
    assert _SHIPPED is not None
    plain = Tokenizer.from_file(str(_SHIPPED))
    plain.no_truncation()
    plain.no_padding()
    return TokenizerJsonCounter(_SHIPPED), plain


_KEPT = _counter_and_plain_tokenizer()


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(max_size=40) | st.sampled_from(["", "a b", "x" * 3000]), max_size=30))
def test_kept_counts_equal_fresh_encodes_and_stay_bounded(texts: list[str]) -> None:
    counter, fresh = _KEPT
    for text in texts * 2:  # the second pass reads what the first one kept
        expected = len(fresh.encode(text, add_special_tokens=False).ids) if text else 0
        assert counter.count(text) == expected
    assert len(counter._counted) <= CACHED_TEXTS
    assert all(len(text) <= CACHED_TEXT_CHARS for text in counter._counted)


def test_the_oldest_kept_count_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _SHIPPED is not None
    monkeypatch.setattr("lanewise.governance.tokens.CACHED_TEXTS", 3)
    counter = TokenizerJsonCounter(_SHIPPED)
    for text in ("one", "two", "three", "four"):
        counter.count(text)
    assert list(counter._counted) == ["two", "three", "four"]
