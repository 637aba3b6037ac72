"""The BM25 analyzer every store with its own lexical index shares."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hypothesis import given
from hypothesis import strategies as st
from lanewise.retrieval.lexical import bm25_rank, query_terms, stem, tokenize


def test_inflected_forms_meet():
    # A question's word and the passage's other form of it reach the same term.
    assert tokenize("compressed") == tokenize("compression") == tokenize("compresses")
    assert tokenize("retrying") == tokenize("retries")
    assert tokenize("libraries") == tokenize("library")


def test_question_words_are_dropped_and_identifiers_split():
    assert query_terms("How do I find out which processes are running?") == [
        stem("find"),
        stem("process"),
        stem("run"),
    ]
    assert tokenize("os.path max_k SIGALRM") == ["os", "path", "max", "k", "sigalrm"]


def test_a_paraphrase_finds_the_passage_by_its_stem():
    docs = [
        ("zlib", "Returns a bytes object containing compressed data."),
        ("json", "Serialize obj to a JSON formatted str."),
    ]
    assert [rid for rid, _ in bm25_rank(docs, "how do I compress bytes", 2)] == ["zlib"]


@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=40))
def test_tokenize_is_the_same_in_every_thread(texts):
    # A Snowball stemmer keeps per-call state: threads (the stores tokenize in workers)
    # must not garble each other's words.
    expected = [tokenize(t) for t in texts]
    stem.cache_clear()
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(tokenize, texts * 4)) == expected * 4
