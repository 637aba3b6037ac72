"""Tokenizers the chunker counts with: token spans (character offsets) of a text.

The chunker measures size and overlap in the embedder's own tokens when the
embedder says where its tokenizer is (``tokenizer_path``, a Hugging Face
``tokenizer.json``); otherwise in words and punctuation marks, which is close
to a WordPiece count for English prose.
"""

from __future__ import annotations

import re
from array import array
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

Spans = tuple["array[int]", "array[int]"]
"""(starts, ends): character offsets of each token, in order."""

_WORDS = re.compile(r"\w+|[^\w\s]")


class Tokenizer(Protocol):
    name: str

    def spans(self, text: str) -> Spans: ...


@runtime_checkable
class HasTokenizerFile(Protocol):
    """An embedder that ships its tokenizer as a Hugging Face ``tokenizer.json``."""

    tokenizer_path: Path


class WordTokenizer:
    """Words (``\\w+``) and single punctuation marks."""

    name = "words"

    def spans(self, text: str) -> Spans:
        starts: array[int] = array("q")
        ends: array[int] = array("q")
        for match in _WORDS.finditer(text):
            starts.append(match.start())
            ends.append(match.end())
        return starts, ends


class FileTokenizer:
    """A Hugging Face ``tokenizer.json`` (e.g. the embedder's WordPiece), without truncation."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.name = f"tokenizer:{path.name}"
        self._tokenizer: Any = HFTokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def spans(self, text: str) -> Spans:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        starts: array[int] = array("q")
        ends: array[int] = array("q")
        last_end = -1
        for start, end in encoding.offsets:
            if end <= start:
                continue  # tokens with no text of their own ([UNK] for control chars)
            if start < last_end:  # pieces of one character (byte fallback) share its span
                continue
            starts.append(start)
            ends.append(end)
            last_end = end
        return starts, ends


def tokenizer_for(choice: str, embedder: object | None) -> Tokenizer:
    """``embedder``: the embedder's tokenizer when it names one, else words; ``words``; a path."""
    if choice == "words":
        return WordTokenizer()
    if choice == "embedder":
        if isinstance(embedder, HasTokenizerFile):
            return FileTokenizer(Path(embedder.tokenizer_path))
        return WordTokenizer()
    path = Path(choice)
    if not path.is_file():
        raise ValueError(
            f"tokenizer {choice!r} is neither 'embedder', 'words' nor a tokenizer.json file"
        )
    return FileTokenizer(path)
