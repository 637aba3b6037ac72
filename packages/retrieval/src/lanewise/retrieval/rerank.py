"""Rerankers: ``mmr`` (maximal marginal relevance), the default, and ``passages``.

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
from collections import OrderedDict
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


_PARAGRAPH = re.compile(r"\n\s*\n")


def passages(text: str, limit: int) -> list[str]:
    """A chunk's paragraphs (blank-line separated), at most ``limit``, the rest merged
    into the last so no text is dropped."""
    parts = [p.strip() for p in _PARAGRAPH.split(text) if p.strip()] or [text]
    if len(parts) > limit:
        parts = [*parts[: limit - 1], "\n\n".join(parts[limit - 1 :])]
    return parts


class PassageReranker:
    """Re-score candidates by their best-matching paragraph (no cross-encoder ships offline).

    A chunk's single embedding averages everything in it, so a chunk whose one
    paragraph answers the question can rank below chunks that are vaguely about
    the topic throughout. This embeds each candidate's paragraphs with the
    configured embedder (cached by text, LRU) and ranks by the best paragraph's
    cosine to the query, plus ``weight`` times the candidate's first-stage score
    normalised to [0, 1]. Only the first ``candidates`` are re-scored.
    """

    name = "passages"

    def __init__(
        self,
        embedder: Embedder,
        *,
        weight: float = 0.1,
        candidates: int = 20,
        max_passages: int = 12,
        cache_entries: int = 50_000,
    ) -> None:
        self.embedder = embedder
        self.weight = weight
        self.candidates = candidates
        self.max_passages = max_passages
        self.cache_entries = cache_entries
        self._cache: OrderedDict[str, np.ndarray[Any, np.dtype[np.float32]]] = OrderedDict()
        self.embedded = 0
        """Passages embedded so far (cache misses), for tests and benchmarks."""

    async def _vectors(self, texts: Sequence[str]) -> list[np.ndarray[Any, Any]]:
        prefix = f"{self.embedder.id}@{self.embedder.version}\0"
        keys = [prefix + t for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            vectors = await self.embedder.embed([k[len(prefix) :] for k in missing])
            self.embedded += len(missing)
            for key, vec in zip(missing, vectors, strict=True):
                self._cache[key] = np.asarray(vec, dtype=np.float32)
        out = []
        for key in keys:
            self._cache.move_to_end(key)
            out.append(self._cache[key])
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)
        return out

    async def rerank(self, *, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        pool, rest = list(hits[: self.candidates]), list(hits[self.candidates :])
        if len(pool) <= 1:
            return [*pool, *rest][:k]
        split = [passages(h.text, self.max_passages) for h in pool]
        flat = [p for parts in split for p in parts]
        (query_vec,) = await self.embedder.embed([query])
        q = np.asarray(query_vec, dtype=np.float32)
        vectors = await self._vectors(flat)
        best, at = [], 0
        for parts in split:
            best.append(max(float(v @ q) for v in vectors[at : at + len(parts)]))
            at += len(parts)
        first = np.array([h.score for h in pool])
        spread = first.max() - first.min()
        prior = (first - first.min()) / spread if spread > 0 else np.ones(len(pool))
        final = np.asarray(best) + self.weight * prior
        order = np.argsort(-final, kind="stable")
        return [*(pool[i] for i in order), *rest][:k]


def build_passages(ctx: FactoryContext) -> PassageReranker:
    opts = ctx.read({"weight", "candidates", "max_passages", "cache_entries"})
    weight = ctx.options.get("weight", 0.1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
        raise ConfigError(f"{ctx.key}.weight must be a number >= 0 (got {weight!r})")
    embedder = ctx.components.embedder()
    if embedder is None:
        raise ConfigError(f"{ctx.key}.kind = 'passages' needs an embedder (retrieval.embedder)")
    return PassageReranker(
        embedder,
        weight=float(weight),
        candidates=opts.integer("candidates", 20, minimum=2),
        max_passages=opts.integer("max_passages", 12),
        cache_entries=opts.integer("cache_entries", 50_000),
    )
