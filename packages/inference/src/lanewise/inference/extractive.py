"""``extractive``: the embedded default model.

No generative weights can ship with lanewise, so the default model is honest
about what it does: it answers with the sentences of the supplied context that
are most relevant to the question, verbatim, each followed by the citation
marker of the hit it came from (``[1]`` is the first hit, as in the RAG prompt
the pipeline renders). It is deterministic: the same request gives the same
answer, token for token.

Relevance is cosine similarity of embeddings when an embedder is configured
(the retrieval lane registers MiniLM as the default), else a lexical overlap
score (:func:`lanewise.inference.text.lexical_scores`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from lanewise.core.factory import FactoryContext
from lanewise.core.protocols import Embedder
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest, Usage
from lanewise.inference.completion import collect
from lanewise.inference.stops import StopScanner
from lanewise.inference.text import cosine, lexical_scores, split_sentences
from lanewise.inference.tokens import TokenCounterImpl, token_counter

log = logging.getLogger("lanewise.inference.extractive")
_PIECE = re.compile(r"\S+\s*")
NO_ANSWER = "The supplied context does not mention this."
OPTIONS = {
    "max_sentences",
    "max_tokens",
    "default_max_tokens",
    "scorer",
    "token_delay_s",
    "tokenizer",
}


@dataclass(frozen=True)
class Candidate:
    position: int
    marker: str | None
    text: str


def question_and_sources(request: ChatRequest) -> tuple[str, list[tuple[str | None, str]]]:
    """The question (last user message) and the texts to extract from, with their markers.

    With retrieval hits the sources are the hits, marked ``[1]..[n]`` in hit
    order; the pipeline's rendered RAG system prompt is ignored because it
    repeats them. Without hits the sources are the other system and user
    messages, or the question itself when it is alone (it may carry its context).
    """
    users = [i for i, m in enumerate(request.messages) if m.role == "user"]
    last = users[-1] if users else None
    question = request.messages[last].content if last is not None else ""
    if request.context:
        return question, [(f"[{i}]", hit.text) for i, hit in enumerate(request.context, 1)]
    texts = [
        m.content
        for i, m in enumerate(request.messages)
        if m.role in ("system", "user") and i != last and m.content.strip()
    ]
    return question, [(None, t) for t in (texts or [question])]


def candidates(sources: list[tuple[str | None, str]]) -> list[Candidate]:
    seen: set[str] = set()
    out: list[Candidate] = []
    for marker, text in sources:
        for sentence in split_sentences(text):
            if sentence in seen:
                continue
            seen.add(sentence)
            out.append(Candidate(len(out), marker, sentence))
    return out


class ExtractiveBackend:
    """A :class:`~lanewise.core.protocols.ChatBackend` that extracts instead of generating."""

    def __init__(
        self,
        *,
        name: str = "extractive",
        embedder: Callable[[], Embedder | None] | None = None,
        scorer: str = "auto",
        max_sentences: int = 3,
        max_output_tokens: int = 4096,
        default_max_tokens: int = 512,
        token_delay_s: float = 0.0,
        counter: TokenCounterImpl | None = None,
    ) -> None:
        self.name = name
        self._embedder_provider = embedder if scorer != "lexical" else None
        self._embedder: Embedder | None = None
        self._embedder_resolved = False
        self.scorer = scorer
        self.max_sentences = max_sentences
        self.max_output_tokens = max_output_tokens
        self.default_max_tokens = min(default_max_tokens, max_output_tokens)
        self.token_delay_s = token_delay_s
        self.counter = counter or token_counter("auto")

    def describe(self) -> dict[str, Any]:
        return {
            "owned_by": "lanewise",
            "lanewise": {
                "kind": "extractive",
                "generative": False,
                "description": (
                    "extractive: answers with the context sentences most relevant to the "
                    "question, verbatim, with citation markers; it does not generate text"
                ),
                "scorer": self.scorer,
                "max_tokens": self.max_output_tokens,
                "tokenizer": self.counter.name,
            },
        }

    def _resolve_embedder(self) -> Embedder | None:
        if not self._embedder_resolved:
            self._embedder_resolved = True
            if self._embedder_provider is not None:
                try:
                    found = self._embedder_provider()
                except Exception as exc:  # a broken embedder must not take the model down
                    log.warning("no embedder for the extractive model, scoring lexically: %s", exc)
                    found = None
                self._embedder = found if isinstance(found, Embedder) else None
        return self._embedder

    async def _scores(self, question: str, cands: list[Candidate]) -> list[float]:
        texts = [c.text for c in cands]
        embedder = self._resolve_embedder()
        if embedder is not None and question.strip():
            vectors = await embedder.embed([question, *texts])
            return [cosine(vectors[0], v) for v in vectors[1:]]
        return lexical_scores(question, texts)

    async def answer(self, request: ChatRequest) -> str:
        """The full answer text (what the stream spells out piece by piece)."""
        question, sources = question_and_sources(request)
        cands = candidates(sources)
        if not cands:
            return NO_ANSWER
        scores = await self._scores(question, cands)
        ranked = sorted(zip(scores, cands, strict=True), key=lambda sc: (-sc[0], sc[1].position))
        chosen = [c for s, c in ranked[: self.max_sentences] if s > 0]
        if not chosen:
            return NO_ANSWER
        return " ".join(f"{c.text} {c.marker}" if c.marker else c.text for c in chosen)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        limit = request.sampling.max_tokens or self.default_max_tokens
        prompt_tokens = self.counter.count_messages(request)
        text = await self.answer(request)
        scanner = StopScanner(request.sampling.stop)
        used = 0
        finish: Any = "stop"
        pieces = _PIECE.findall(text)
        for piece, cost in zip(pieces, self.counter.count_each(pieces), strict=True):
            if used + cost > limit:
                finish = "length"
                break
            used += cost
            out = scanner.feed(piece)
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            else:
                await asyncio.sleep(0)  # a cancellation point per token, like a real model
            if out:
                yield ChatChunk(delta=out)
            if scanner.stopped:
                break
        rest = scanner.flush()
        if rest:
            yield ChatChunk(delta=rest)
        yield ChatChunk(
            finish_reason=finish,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=used),
        )

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        return await collect(request.model, self.stream(request))


def build_extractive(ctx: FactoryContext) -> ExtractiveBackend:
    opts = ctx.read(OPTIONS)
    max_tokens = opts.integer("max_tokens", 4096, minimum=1)
    default_max = opts.integer("default_max_tokens", 512, minimum=1)
    max_sentences = opts.integer("max_sentences", 3, minimum=1)
    delay = opts.number("token_delay_s", 0.0)
    return ExtractiveBackend(
        embedder=ctx.components.embedder,
        scorer=opts.choice("scorer", "auto", ("auto", "embedding", "lexical")),
        max_sentences=max_sentences,
        max_output_tokens=max_tokens,
        default_max_tokens=default_max,
        token_delay_s=delay,
        counter=token_counter(opts.text("tokenizer", "auto") or "auto"),
    )
