"""Prompt counts: the model's own chat template when it ships one, never a download."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lanewise.core.errors import ConfigError
from lanewise.core.types import Message
from lanewise.governance.tokens import (
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
