"""The extractive model: relevant sentences, citation markers, limits, determinism."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lanewise.core.errors import ConfigError
from lanewise.core.settings import ComponentConfig
from lanewise.core.testing import factory_context
from lanewise.core.types import ChatRequest, Hit, Message, SamplingParams
from lanewise.inference.extractive import NO_ANSWER, ExtractiveBackend, build_extractive
from lanewise.inference.stops import StopScanner
from lanewise.inference.text import split_sentences
from lanewise.inference.tokens import RegexTokenCounter

HITS = [
    Hit(id="a", score=1.0, text="The interactive pool is warm. It never scales to zero."),
    Hit(id="b", score=0.9, text="The batch pool runs on spot capacity. Spot replicas can vanish."),
]


def ask(question: str, **sampling: object) -> ChatRequest:
    return ChatRequest(
        model="extractive",
        messages=[Message(role="user", content=question)],
        context=list(HITS),
        sampling=SamplingParams(**sampling),  # type: ignore[arg-type]
    )


async def test_answers_with_the_most_relevant_sentence_and_its_marker():
    backend = ExtractiveBackend(max_sentences=1, counter=RegexTokenCounter())
    completion = await backend.generate(ask("Where does the batch pool run?"))
    assert completion.text == "The batch pool runs on spot capacity. [2]"
    assert completion.finish_reason == "stop"
    assert completion.usage.completion_tokens == RegexTokenCounter().count(completion.text)
    assert completion.usage.prompt_tokens > 0


async def test_is_deterministic_chunk_for_chunk():
    backend = ExtractiveBackend(counter=RegexTokenCounter())
    runs = [[c async for c in backend.stream(ask("Is the interactive pool warm?"))] for _ in "ab"]
    assert runs[0] == runs[1]
    assert len(runs[0]) > 3  # streamed piece by piece, not in one chunk


async def test_max_tokens_cuts_with_finish_reason_length():
    backend = ExtractiveBackend(counter=RegexTokenCounter())
    completion = await backend.generate(ask("Where does the batch pool run?", max_tokens=3))
    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens <= 3
    assert completion.text.split() == ["The", "batch", "pool"]


async def test_stop_sequence_ends_the_answer_before_it():
    backend = ExtractiveBackend(max_sentences=1, counter=RegexTokenCounter())
    completion = await backend.generate(ask("Where does the batch pool run?", stop=("spot",)))
    assert completion.text == "The batch pool runs on "
    assert completion.finish_reason == "stop"


async def test_without_hits_extracts_from_the_messages():
    backend = ExtractiveBackend(max_sentences=1, counter=RegexTokenCounter())
    request = ChatRequest(
        model="extractive",
        messages=[
            Message(role="system", content="Redis holds counters. SQLite holds the ledger."),
            Message(role="user", content="What holds the ledger?"),
        ],
    )
    completion = await backend.generate(request)
    assert completion.text == "SQLite holds the ledger."


async def test_says_so_when_nothing_matches():
    backend = ExtractiveBackend(scorer="lexical", counter=RegexTokenCounter())
    completion = await backend.generate(ask("Quantum chromodynamics?"))
    assert completion.text == NO_ANSWER


class HashingEmbedder:
    """A real (if weak) embedder: hashed bag of words. The MiniLM embedder lives in
    the retrieval lane, which this lane may not import; this exercises the cosine path."""

    id = "hashing"
    version = "1"
    dimension = 64

    def __init__(self) -> None:
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        out = []
        for text in texts:
            vec = [0.0] * self.dimension
            for word in text.lower().replace(".", " ").replace("?", " ").split():
                vec[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dimension] += 1
            out.append(vec)
        return out


async def test_scores_with_the_embedder_when_one_is_configured():
    embedder = HashingEmbedder()
    backend = ExtractiveBackend(embedder=lambda: embedder, max_sentences=1)
    completion = await backend.generate(ask("Spot replicas can vanish?"))
    assert embedder.calls == 1
    assert completion.text == "Spot replicas can vanish. [2]"
    assert backend.describe()["lanewise"]["kind"] == "extractive"


def test_bad_option_names_the_key():
    with pytest.raises(ConfigError, match="scorer"):
        build_extractive(factory_context(ComponentConfig(kind="extractive", scorer="magic")))
    with pytest.raises(ConfigError, match="is not an option"):
        build_extractive(factory_context(ComponentConfig(kind="extractive", colour=1)))


@given(
    st.lists(st.text(alphabet="ab.\n ", max_size=6), max_size=8),
    st.lists(st.text(alphabet="ab.", min_size=1, max_size=3), max_size=2),
)
def test_stop_scanner_equals_cutting_the_joined_text(pieces, stops):
    scanner = StopScanner(stops)
    out = "".join(scanner.feed(p) for p in pieces) + scanner.flush()
    text = "".join(pieces)
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    assert out == (text[: min(cuts)] if cuts else text)


@given(st.text(max_size=300))
def test_split_sentences_never_loses_words(text):
    words = [w for w in text.split() if any(c.isalnum() for c in w)]
    joined = " ".join(split_sentences(text)).split()
    assert all(w in joined for w in words)
