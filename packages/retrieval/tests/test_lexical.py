"""The BM25 analyzer every store with its own lexical index shares."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from lanewise.retrieval.lexical import bm25_rank, query_terms, stem, tokenize
from lanewise.retrieval.stores.embedded_lexical import LexicalIndex


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


def zipf_index(seed: int = 1, n: int = 3000) -> tuple[LexicalIndex, np.ndarray]:
    """Slots of Zipf-distributed words (a few words in most slots, most in few), some
    killed, as the embedded store's postings would hold them."""
    rng = np.random.default_rng(seed)
    index = LexicalIndex()
    ranks = np.minimum(rng.zipf(1.2, size=(n, 30)), 2000)
    docs = [[f"w{r}" for r in row] for row in ranks]
    for start in range(0, n, 700):  # several batches: postings arrive in parts
        index.append(docs[start : start + 700])
    live = np.ones(n, dtype=bool)
    for slot in rng.choice(n, size=n // 10, replace=False):
        live[slot] = False
        index.kill(int(slot))
    return index, live


INDEX, LIVE = zipf_index()


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.integers(1, 400), min_size=1, max_size=6),
    common=st.lists(st.integers(1, 6), max_size=2),
    k=st.integers(1, 60),
    selectivity=st.sampled_from((1.0, 0.5, 0.05)),
    seed=st.integers(0, 2**16),
)
def test_pruned_bm25_equals_scoring_every_posting(words, common, k, selectivity, seed):
    """MaxScore pruning of the common terms' postings changes no score and no hit (hits
    with equal scores may swap across the cut-off, as in any top-k)."""
    terms = [f"w{r}" for r in dict.fromkeys([*common, *words])]
    rng = np.random.default_rng(seed)
    allowed = LIVE & (rng.random(len(LIVE)) < selectivity)
    args = (terms, k, LIVE, allowed, int(LIVE.sum()), int(allowed.sum()))
    full = INDEX.search(*args, prune=False)
    pruned = INDEX.search(*args)
    assert [score for _, score in pruned] == [score for _, score in full]
    cut = full[-1][1] if full else 0.0
    assert {s for s, v in pruned if v > cut} == {s for s, v in full if v > cut}
    assert all(allowed[s] for s, _ in pruned)


def test_pruning_happens_for_a_common_term_with_rare_ones():
    found = [INDEX._term(t, LIVE, int(LIVE.sum())) for t in ("w1", "w150", "w300")]
    assert len(found[0][0]) > INDEX.size // 20  # w1 is in most slots: a tail term
    assert INDEX._pruned([f for f in found if f is not None], 5, None) is not None
