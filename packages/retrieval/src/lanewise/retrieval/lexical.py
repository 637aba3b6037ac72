"""BM25 lexical ranking shared by every store that keeps its own lexical index.

One tokenizer and one scoring formula, so the embedded store, pgvector and the
contract suite's brute-force reference rank identically:

- tokens are runs of letters and digits (``max_k`` → ``max``, ``k``; ``os.path``
  → ``os``, ``path``), lower-cased, English stopwords dropped, then a light
  plural stemmer (``libraries`` → ``library``, ``queues`` → ``queue``,
  ``threads`` → ``thread``) so singular and plural meet;
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
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from lanewise.core.protocols import Filter
from lanewise.core.types import Hit

K1 = 1.2
B = 0.75

_TOKEN = re.compile(r"[^\W_]+")

STOPWORDS = frozenset(
    {
        *("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have"),
        *("in", "into", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to"),
        *("was", "were", "will", "with"),
    }
)


def stem(token: str) -> str:
    """Harman's "S" stemmer: plural endings only (cheap, predictable, rarely wrong)."""
    if len(token) > 3 and token.endswith("ies") and not token.endswith(("eies", "aies")):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("es") and not token.endswith(("aes", "ees", "oes")):
        return token[:-1]
    if len(token) > 2 and token.endswith("s") and not token.endswith(("us", "ss")):
        return token[:-1]
    return token


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
