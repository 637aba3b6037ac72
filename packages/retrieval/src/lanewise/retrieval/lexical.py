"""BM25 lexical ranking shared by every store that keeps its own lexical index.

One tokenizer and one scoring formula, so the embedded store, pgvector and the
contract suite's brute-force reference rank identically:

- tokens are runs of letters and digits (``max_k`` → ``max``, ``k``; ``os.path``
  → ``os``, ``path``), lower-cased, English stopwords dropped (the common
  function words, Snowball's English list: ``how``, ``do``, ``i``, ``which``…,
  words a question is full of and that say nothing about the answer), then
  stemmed with the Snowball English (Porter 2) stemmer (``compressed``,
  ``compression`` → ``compress``; ``libraries`` → ``librari``), so a question's
  word meets the passage's other form of it. Measured on the stdlib golden set
  (``bench/retrieval/quality.py``), this took lexical MRR@10 from 0.44 (a short
  Lucene-style stopword list and a plural-only stemmer) to 0.53;
  :data:`ANALYZER` names it, and a store that keeps analysed terms re-analyses
  its rows when it changes;
- BM25 with ``k1 = 1.2``, ``b = 0.75`` and Lucene's non-negative IDF
  ``ln(1 + (N - df + 0.5) / (df + 0.5))``; each distinct query term counts once;
- the statistics (``N``, ``df``, average length) are the tenant's: nothing
  another tenant stores changes a score, and a metadata filter restricts which
  rows are returned, not how they are scored (as in Lucene/Elasticsearch).

Weaviate scores with its own BM25 (same k1/b defaults, its own tokenizer).
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Protocol, runtime_checkable

import snowballstemmer
from lanewise.core.protocols import Filter
from lanewise.core.types import Hit

K1 = 1.2
B = 0.75

_TOKEN = re.compile(r"[^\W_]+")

ANALYZER = "snowball-en-1"
"""Names the analysis below; change it whenever a text would be analysed differently."""

# Snowball's English stopword list (snowballstem.org/algorithms/english/stop.txt) without
# its contractions (the tokenizer splits them at the apostrophe), plus NLTK's "can", "just"
# and "will".
_STOP = """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other ought our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves"""
STOPWORDS = frozenset(_STOP.split())

_STEMMERS = threading.local()  # a Snowball stemmer keeps per-call state: one per thread


@lru_cache(maxsize=1 << 17)
def stem(token: str) -> str:
    """Snowball English; cached, as a corpus repeats a small vocabulary many times."""
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    result: str = stemmer.stemWord(token)
    return result


def tokenize(text: str) -> list[str]:
    return [stem(t) for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


def query_terms(text: str) -> list[str]:
    """A query's distinct terms, in first-seen order."""
    return list(dict.fromkeys(tokenize(text)))


def idf(n_docs: int, df: int) -> float:
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


def term_score(idf_value: float, tf: float, length: float, avg_length: float) -> float:
    norm = K1 * (1.0 - B + B * length / avg_length) if avg_length > 0 else K1
    return idf_value * tf * (K1 + 1.0) / (tf + norm)


def bm25_rank(
    docs: Sequence[tuple[str, str]], query: str, k: int, allowed: Iterable[str] | None = None
) -> list[tuple[str, float]]:
    """Exact top-k (id, BM25) over ``docs`` = [(id, text)]: the reference every store meets.

    Statistics come from all ``docs`` (one tenant's rows); only ids in ``allowed``
    (default: all) are returned, and only those matching at least one query term.
    """
    terms = query_terms(query)
    counted = [(rid, Counter(tokenize(text))) for rid, text in docs]
    n = len(counted)
    if not terms or n == 0:
        return []
    avg = sum(sum(c.values()) for _, c in counted) / n
    dfs = {t: sum(1 for _, c in counted if t in c) for t in terms}
    keep = None if allowed is None else set(allowed)
    scored = []
    for rid, counts in counted:
        if keep is not None and rid not in keep:
            continue
        length = sum(counts.values())
        matched = [t for t in terms if t in counts]
        if matched:
            score = sum(term_score(idf(n, dfs[t]), counts[t], length, avg) for t in matched)
            scored.append((rid, score))
    scored.sort(key=lambda pair: -pair[1])
    return scored[:k]


@runtime_checkable
class LexicalStore(Protocol):
    """A vector store that also ranks its texts lexically (BM25), under the same tenant
    isolation and filter rules as its vector search."""

    async def search_lexical(
        self, *, tenant: str, query: str, k: int, filter: Filter | None = None
    ) -> list[Hit]: ...
