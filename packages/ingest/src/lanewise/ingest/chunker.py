"""A token-aware recursive splitter: size and overlap are counted in tokens.

Within a section (a heading's body, a page, a record, a block), each chunk
takes at most ``size`` tokens and ends at the strongest boundary that fits:
a paragraph break, else a line break, else a sentence end, else a space,
else any token. Consecutive chunks of a section share exactly ``overlap``
tokens. Chunks never cross sections, so headings and pages stay whole units.
Every chunk is a substring of its section (``start``/``end`` say where). A word
longer than ``size`` tokens (a URL, a hash) has to be cut inside; its pieces may
then count a token or two differently when tokenised alone.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lanewise.core.types import Chunk, Document
from lanewise.ingest.tokens import Tokenizer, WordTokenizer

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s")


@dataclass(frozen=True)
class Piece:
    """One chunk of a section: ``text == section[start:end]``, ``tokens`` counted."""

    text: str
    start: int
    end: int
    tokens: int


class TokenChunker:
    """``tokens`` chunker (core's ``Chunker``): see the module docstring."""

    name = "tokens"

    def __init__(self, *, size: int = 200, overlap: int = 20, tokenizer: Tokenizer | None = None):
        if size < 1:
            raise ValueError(f"size must be at least 1 token (got {size})")
        if not 0 <= overlap < size:
            raise ValueError(f"overlap must be at least 0 and below size={size} (got {overlap})")
        self.size = size
        self.overlap = overlap
        self.tokenizer = tokenizer or WordTokenizer()

    @property
    def config_key(self) -> str:
        """Changes whenever the same text would be cut differently (part of a document's key)."""
        return f"{self.name}:{self.tokenizer.name}:{self.size}:{self.overlap}"

    def pieces(self, text: str) -> Iterator[Piece]:
        starts, ends = self.tokenizer.spans(text)
        n = len(starts)
        first = 0
        while first < n:
            limit = first + self.size
            stop = (
                n
                if limit >= n
                else self._break(text, starts, ends, first + self.overlap + 1, limit)
            )
            yield Piece(
                text[starts[first] : ends[stop - 1]], starts[first], ends[stop - 1], stop - first
            )
            if stop >= n:
                return
            first = stop - self.overlap

    def _break(self, text: str, starts: Any, ends: Any, lo: int, limit: int) -> int:
        """The token index in ``[lo, limit]`` to stop before: the strongest boundary, last one."""
        region_start, region_end = ends[lo - 1], starts[limit]
        for sep in ("\n\n", "\n"):
            at = text.rfind(sep, region_start, region_end)
            if at >= 0:
                stop = bisect_left(starts, at + len(sep))
                if lo <= stop <= limit:
                    return stop
        last = None
        for match in _SENTENCE_END.finditer(text, starts[lo - 1], region_end):
            last = match
        if last is not None:
            stop = bisect_left(starts, last.end())
            if lo <= stop <= limit:
                return stop
        for stop in range(limit, lo - 1, -1):
            if starts[stop] > ends[stop - 1]:
                return stop
        return limit

    def chunk(self, document: Document) -> list[Chunk]:
        return [
            Chunk(
                id=f"{document.id}#{n}",
                document_id=document.id,
                text=piece.text,
                index=n,
                source=document.source,
                metadata={**document.metadata, "start": piece.start, "end": piece.end},
            )
            for n, piece in enumerate(self.pieces(document.text))
        ]
