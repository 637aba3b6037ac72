"""Rerankers: ``mmr`` (maximal marginal relevance), the default.

MMR picks, one at a time, the candidate that maximises
``lambda * relevance - (1 - lambda) * max similarity to what is already picked``,
so the context handed to the model covers more ground than the top-k nearest
chunks, which are often near-duplicates (overlapping chunks, copied sections).

Relevance is the store's score. Redundancy between candidates is measured
lexically by default (Jaccard over word bigrams): the store contract returns
no vectors, and re-embedding every candidate would cost more than the search.
``similarity = "embedding"`` re-embeds the candidates with the configured
embedder instead (better on paraphrases, at one embedder batch per query).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from lanewise.core.errors import ConfigError
from lanewise.core.factory import FactoryContext
from lanewise.core.protocols import Embedder
from lanewise.core.types import Hit

_WORD = re.compile(r"\w+")


def shingles(text: str) -> frozenset[str]:
    words = _WORD.findall(text.lower())
    if len(words) < 2:
        return frozenset(words)
    return frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))


def jaccard_matrix(texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
    sets = [shingles(t) for t in texts]
    n = len(sets)
    sim = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            union = len(sets[i] | sets[j])
            sim[i, j] = sim[j, i] = len(sets[i] & sets[j]) / union if union else 0.0
    return sim


def mmr_order(
    relevance: Sequence[float], similarity: np.ndarray[Any, Any], k: int, lam: float
) -> list[int]:
    """Indices of the ``k`` candidates MMR picks, in pick order."""
    remaining = list(range(len(relevance)))
    picked: list[int] = []
    redundancy = np.zeros(len(relevance))
    while remaining and len(picked) < k:
        # Ties (e.g. lambda = 0, where every first pick scores 0) go to the more relevant.
        best = max(
            remaining,
            key=lambda i: (lam * relevance[i] - (1 - lam) * redundancy[i], relevance[i]),
        )
        picked.append(best)
        remaining.remove(best)
        redundancy = np.maximum(redundancy, similarity[best])
    return picked


class MMRReranker:
    name = "mmr"

    def __init__(
        self, *, lambda_: float = 0.7, similarity: str = "lexical", embedder: Embedder | None = None
    ) -> None:
        self.lambda_ = lambda_
        self.similarity = similarity
        self.embedder = embedder

    async def rerank(self, *, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if len(hits) <= 1:
            return list(hits[:k])
        texts = [h.text for h in hits]
        if self.similarity == "embedding" and self.embedder is not None:
            vectors = np.asarray(await self.embedder.embed(texts))
            sim = vectors @ vectors.T
        else:
            sim = jaccard_matrix(texts)
        order = mmr_order([h.score for h in hits], sim, k, self.lambda_)
        return [hits[i] for i in order]


def build_mmr(ctx: FactoryContext) -> MMRReranker:
    opts = ctx.read({"lambda", "similarity"})
    lam = ctx.options.get("lambda", 0.7)
    if isinstance(lam, bool) or not isinstance(lam, int | float) or not 0.0 <= lam <= 1.0:
        raise ConfigError(f"{ctx.key}.lambda must be a number in [0, 1] (got {lam!r})")
    similarity = opts.choice("similarity", "lexical", ("lexical", "embedding"))
    embedder = ctx.components.embedder() if similarity == "embedding" else None
    return MMRReranker(lambda_=float(lam), similarity=similarity, embedder=embedder)
