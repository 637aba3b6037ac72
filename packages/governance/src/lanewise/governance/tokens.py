"""Token counts before the call (prompts) and while streaming (completions).

Each model names its tokenizer (``[governance.prices.<model>] tokenizer``):
``auto`` uses the MiniLM ``tokenizer.json`` the retrieval lane ships as a data
file (found on disk, never imported, so the lanes stay independent), a path
names any ``tokenizer.json``; ``whitespace`` is the dependency-free fallback.
Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from lanewise.core.errors import ConfigError, InvalidRequest
from lanewise.core.types import Message

MESSAGE_OVERHEAD = 4
"""Tokens a chat template adds per message (role markers, separators), as OpenAI documents."""
REPLY_PRIMING = 3
"""Tokens that open the assistant's reply."""
CACHED_TEXTS = 4096
CACHED_TEXT_CHARS = 2048
"""Counts of short texts are kept (at most 8 M characters): a chat resends its system prompt
and earlier turns with every request, and streams repeat small deltas; encoding a short
message costs ~20 µs, a lookup well under one."""
_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class TokenCounter(Protocol):
    name: str
    chat_template: ChatTemplate | None

    def count(self, text: str) -> int: ...

    def count_many(self, texts: Sequence[str]) -> list[int]: ...


class WhitespaceCounter:
    """One token per word, number or punctuation mark (no tokenizer file needed)."""

    name = "whitespace"
    chat_template: ChatTemplate | None = None

    def count(self, text: str) -> int:
        return len(_WORDS.findall(text))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]


class TokenizerJsonCounter:
    """Exact counts with a Hugging Face ``tokenizer.json`` (no special tokens added).

    When a ``tokenizer_config.json`` beside it has a ``chat_template``, prompts are
    counted after rendering that template, as the model will see them.
    """

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer: Any = Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.name = f"tokenizer.json:{path.name}"
        self._counted: dict[str, int] = {}
        self.chat_template = ChatTemplate.beside(path)

    def count(self, text: str) -> int:
        if not text:
            return 0
        found = self._counted.get(text)
        if found is None:
            found = len(self._tokenizer.encode(text, add_special_tokens=False).ids)
            if len(text) <= CACHED_TEXT_CHARS:
                if len(self._counted) >= CACHED_TEXTS:
                    self._counted.pop(next(iter(self._counted)), None)  # the oldest
                self._counted[text] = found
        return found

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if len(texts) < 8:
            # encode_batch hands work to a thread pool: dearer than it saves for a few texts.
            return [self.count(t) for t in texts]
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]


def shipped_tokenizer() -> Path | None:
    spec = importlib.util.find_spec("lanewise.retrieval")
    for location in (spec.submodule_search_locations or ()) if spec else ():
        found = sorted(Path(location).glob("**/*tokenizer.json"))
        if found:
            return found[0]
    return None


@lru_cache(maxsize=16)
def counter_for(spec: str) -> TokenCounter:
    if spec == "whitespace":
        return WhitespaceCounter()
    if spec == "auto":
        path = shipped_tokenizer()
        return TokenizerJsonCounter(path) if path is not None else WhitespaceCounter()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"governance.prices.*.tokenizer = {spec!r}: no such file; "
            "use 'auto', 'whitespace' or a path to a tokenizer.json"
        )
    return TokenizerJsonCounter(path)


class ChatTemplate:
    """A model's Jinja chat template (``tokenizer_config.json``), rendered as HF does."""

    def __init__(self, source: str, special: dict[str, str]) -> None:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_template_error
        self._template = env.from_string(source)
        self._special = special

    @classmethod
    def beside(cls, tokenizer_json: Path) -> ChatTemplate | None:
        config_path = tokenizer_json.with_name("tokenizer_config.json")
        if not config_path.is_file():
            return None
        config = json.loads(config_path.read_text())
        source = config.get("chat_template")
        if not isinstance(source, str):
            return None
        special = {
            name: value["content"] if isinstance(value, dict) else str(value)
            for name in ("bos_token", "eos_token", "unk_token", "pad_token")
            if (value := config.get(name)) is not None
        }
        return cls(source, special)

    def render(self, messages: Sequence[Message]) -> str:
        return str(
            self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                **self._special,
            )
        )


def _raise_template_error(message: str) -> None:
    raise InvalidRequest(f"the model's chat template refused the messages: {message}")


def prompt_tokens(counter: TokenCounter, messages: Sequence[Message]) -> int:
    """Tokens of a chat prompt after the chat template.

    With the model's own template (``tokenizer_config.json``) the count is exact;
    otherwise each message adds the per-message overhead OpenAI documents.
    """
    if counter.chat_template is not None:
        return counter.count(counter.chat_template.render(messages))
    counts = counter.count_many([m.content for m in messages])
    return sum(counts) + MESSAGE_OVERHEAD * len(messages) + REPLY_PRIMING
