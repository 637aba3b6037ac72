"""Token counts before the call (prompts) and while streaming (completions).

Each model names its tokenizer (``[governance.prices.<model>] tokenizer``):
``auto`` uses the MiniLM ``tokenizer.json`` the retrieval lane ships as a data
file (found on disk, never imported, so the lanes stay independent), a path
names any ``tokenizer.json``; ``whitespace`` is the dependency-free fallback.
Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from lanewise.core.errors import ConfigError
from lanewise.core.types import Message

MESSAGE_OVERHEAD = 4
"""Tokens a chat template adds per message (role markers, separators), as OpenAI documents."""
REPLY_PRIMING = 3
"""Tokens that open the assistant's reply."""
_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...

    def count_many(self, texts: Sequence[str]) -> list[int]: ...


class WhitespaceCounter:
    """One token per word, number or punctuation mark (no tokenizer file needed)."""

    name = "whitespace"

    def count(self, text: str) -> int:
        return len(_WORDS.findall(text))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]


class TokenizerJsonCounter:
    """Exact counts with a Hugging Face ``tokenizer.json`` (no special tokens)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer: Any = Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.name = f"tokenizer.json:{path.name}"

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids) if text else 0

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


def prompt_tokens(counter: TokenCounter, messages: Sequence[Message]) -> int:
    """Tokens of a chat prompt after the chat template (content + per-message overhead)."""
    counts = counter.count_many([m.content for m in messages])
    return sum(counts) + MESSAGE_OVERHEAD * len(messages) + REPLY_PRIMING
