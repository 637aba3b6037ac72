"""A third-party plugin written only against lanewise's documented hooks.

It lives outside every package on purpose: it proves a lane can add a settings
section, model-call guards and a prompt resolver without editing core.

* ``[quota]`` settings section (``lanewise_register_settings``);
* guard ``quota`` refuses calls to ``quota.refused_model`` with a 429 naming itself;
* guard ``word-cap`` ends a stream after ``quota.max_stream_words`` words;
* prompt ``rag`` resolves to ``spine/rag`` at ``quota.prompt_version``;
* backend ``words`` streams numbered words and records whether it was cut short;
* a two-passage retriever so RAG requests have sources.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from lanewise.core.errors import LimitExceeded
from lanewise.core.factory import FactoryContext
from lanewise.core.guards import CallOutcome, ModelCall, StreamStop
from lanewise.core.hookspecs import hookimpl
from lanewise.core.prompts import PromptTemplate
from lanewise.core.settings import Section
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest, Hit, Usage
from pydantic import Field


class QuotaSettings(Section):
    refused_model: str | None = None
    max_stream_words: int = Field(5, ge=1)
    prompt_version: str = "1"
    words: int = Field(20, ge=1, description="words the `words` backend streams")


@dataclass
class Record:
    """What the plugin saw, for the tests to assert on."""

    admitted: list[tuple[str, ModelCall]] = field(default_factory=list)
    settled: list[tuple[str, CallOutcome]] = field(default_factory=list)
    upstream_calls: list[ChatRequest] = field(default_factory=list)
    upstream_finished: list[bool] = field(default_factory=list)


class Ticket:
    def __init__(self, guard: str, record: Record, max_words: int | None) -> None:
        self.guard, self.record, self.max_words, self.words = guard, record, max_words, 0

    def on_chunk(self, chunk: ChatChunk) -> StreamStop | None:
        self.words += len(chunk.delta.split())
        if self.max_words is not None and self.words >= self.max_words:
            return StreamStop(
                finish_reason="length",
                lanewise={"stopped_by": {"guard": self.guard, "limit": self.max_words}},
            )
        return None

    async def settle(self, outcome: CallOutcome) -> None:
        self.record.settled.append((self.guard, outcome))


class QuotaGuard:
    name = "quota"

    def __init__(self, settings: QuotaSettings, record: Record) -> None:
        self.settings, self.record = settings, record

    async def admit(self, call: ModelCall) -> Ticket | None:
        if call.model == self.settings.refused_model:
            raise LimitExceeded(
                f"guard 'quota' refuses model {call.model!r}; ask for another model",
                retry_after_s=30,
                guard="quota",
            )
        self.record.admitted.append((self.name, call))
        return Ticket(self.name, self.record, None)


class WordCapGuard:
    name = "word-cap"

    def __init__(self, settings: QuotaSettings, record: Record) -> None:
        self.settings, self.record = settings, record

    async def admit(self, call: ModelCall) -> Ticket | None:
        self.record.admitted.append((self.name, call))
        return Ticket(self.name, self.record, self.settings.max_stream_words)


class WordsBackend:
    name = "words"

    def __init__(self, words: int, record: Record) -> None:
        self.words, self.record = words, record

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.record.upstream_calls.append(request)
        finished = False
        try:
            for i in range(self.words):
                await asyncio.sleep(0.002)
                yield ChatChunk(delta=f"w{i} ")
            finished = True
            yield ChatChunk(
                finish_reason="stop", usage=Usage(prompt_tokens=3, completion_tokens=self.words)
            )
        finally:
            self.record.upstream_finished.append(finished)

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        text = "".join([c.delta async for c in self.stream(request)])
        return ChatCompletion(
            model=request.model,
            text=text,
            finish_reason="stop",
            usage=Usage(prompt_tokens=3, completion_tokens=self.words),
        )


class TwoPassages:
    default_k, degrade = 2, False

    async def retrieve(self, *, principal, query, k, filter=None, request_id=""):  # type: ignore[no-untyped-def]
        return [
            Hit(id="p1", score=0.9, text="Lanes scale alone.", source="lanes.md"),
            Hit(id="p2", score=0.5, text="Hooks join lanes.", source="hooks.md"),
        ][:k]


class SpinePlugin:
    def __init__(self) -> None:
        self.record = Record()

    @hookimpl
    def lanewise_register_settings(self, register):  # type: ignore[no-untyped-def]
        register("quota", QuotaSettings, description="the spine test plugin's limits")

    @hookimpl
    def lanewise_register_guards(self, register):  # type: ignore[no-untyped-def]
        register("quota", self._quota, order=10)
        register("word-cap", self._word_cap, order=20)

    @hookimpl
    def lanewise_register_backends(self, register):  # type: ignore[no-untyped-def]
        register("words", self._words, default=True)

    @hookimpl
    def lanewise_resolve_retriever(self, components):  # type: ignore[no-untyped-def]
        return TwoPassages()

    @hookimpl
    def lanewise_resolve_prompt(self, name: str, request: ChatRequest) -> PromptTemplate | None:
        if name != "rag":
            return None
        return PromptTemplate(
            name="spine/rag", version=self._version, text="Use these sources:\n{sources}"
        )

    _version = "1"

    def _quota(self, ctx: FactoryContext) -> QuotaGuard:
        settings = ctx.components.section(QuotaSettings)
        self._version = settings.prompt_version
        return QuotaGuard(settings, self.record)

    def _word_cap(self, ctx: FactoryContext) -> WordCapGuard:
        return WordCapGuard(ctx.components.section(QuotaSettings), self.record)

    def _words(self, ctx: FactoryContext) -> WordsBackend:
        return WordsBackend(ctx.components.section(QuotaSettings).words, self.record)
