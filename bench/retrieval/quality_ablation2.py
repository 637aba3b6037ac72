"""Second round of ideas to lift hybrid retrieval, one at a time, on the golden set.

Same pieces as :mod:`bench.retrieval.quality_ablation` (exact cosine, the store's BM25,
:func:`lanewise.retrieval.fusion.fuse`), and the same measures and halves. What it tries:

- pseudo-relevance feedback, both ways: BM25 expanded with the terms of the top dense
  hits (RM3-style: the ``terms`` best by tf/length x IDF over the top ``m`` dense chunks,
  each at ``weight``), then fused; and the query vector moved towards its top dense or
  lexical hits (Rocchio: ``q + beta * mean(top m)``);
- fusion by raw cosine plus ``beta`` x BM25 divided by the query's best BM25, over the
  union of both 40-deep lists (a dense-first prior: the cosine is not normalised away);
- lexical weight only when BM25 is confident (its first score >= 1.4 x its second: the
  ``gated`` fusion of :mod:`lanewise.retrieval.fusion`);
- document-level evidence: a per-document prior, the cosine to the mean of the
  document's chunk vectors (``gamma``); or, from the candidates alone (what a reranker
  could do), ``gamma`` x the score of the document's second-best candidate;
- a reranker built from the embedder: every candidate's sentences embedded, a chunk
  scored by its best sentence's cosine (plus ``w`` x its first-stage score normalised
  to [0, 1], or mixed with its own cosine). Embedding the corpus's sentences takes
  about 3 minutes on one thread;
- and, as a ceiling for any fusion of these two rankings, hindsight: per question,
  whichever of the candidate lists ranks the right document best (dense or lexical;
  or the weighted fusion at whichever alpha in 0, 0.1, ..., 1 is best for it).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m bench.retrieval.quality_ablation2``
(prints a Markdown table; docs/retrieval.md quotes it).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from lanewise.core.types import Hit
from lanewise.retrieval import lexical
from lanewise.retrieval.embedders.minilm import MiniLMEmbedder
from lanewise.retrieval.fusion import fuse

from bench.retrieval.golden import load
from bench.retrieval.quality import K
from bench.retrieval.quality_ablation import BM25, Row, Setup, print_table

Pairs = list[tuple[int, float]]
_SENTENCE = re.compile(r"(?<=[.!?:])\s+(?=[A-Z`'\"(\[])|\n\s*\n")


def sentences(text: str) -> list[str]:
    """A chunk's sentences (and paragraphs), whitespace collapsed; fragments under 12
    characters dropped (list markers, ``>>>`` prompts)."""
    parts = [" ".join(p.split()) for p in _SENTENCE.split(text)]
    return [p for p in parts if len(p) >= 12] or [" ".join(text.split())]


def hindsight(questions: list[dict[str, Any]], options: list[list[list[Hit]]]) -> list[list[Hit]]:
    """Per question, the option that ranks its document first-best (an upper bound: it
    needs the answer to choose)."""

    def rank(hits: list[Hit], doc: str) -> int:
        docs = [h.metadata["doc"] for h in hits[:K]]
        return docs.index(doc) if doc in docs else K

    return [
        min((option[i] for option in options), key=lambda hits: rank(hits, q["doc"]))
        for i, q in enumerate(questions)
    ]


def ordered(scores: dict[int, float]) -> Pairs:
    return sorted(scores.items(), key=lambda pair: -pair[1])


class Round2:
    def __init__(self, setup: Setup) -> None:
        self.s = setup
        self.bm25 = BM25(setup.texts, lexical.tokenize)
        self.lex = [self.bm25.rank(q["question"], 200) for q in setup.questions]
        self.terms = [Counter(lexical.tokenize(t)) for t in setup.texts]
        docs = [r[2]["doc"] for r in setup.rows]
        names = sorted(set(docs))
        self.doc_of = np.array([names.index(d) for d in docs])
        centroids = np.zeros((len(names), setup.chunk_m.shape[1]), dtype=np.float32)
        np.add.at(centroids, self.doc_of, setup.chunk_m)
        self.centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)

    def each(self, rank: Callable[[int], Pairs]) -> list[list[Hit]]:
        return [self.s.hits(rank(i)[:K]) for i in range(len(self.s.questions))]

    def bm25_weighted(self, weighted: list[tuple[str, float]]) -> Pairs:
        bm = self.bm25
        scores = np.zeros(bm.n)
        for term, weight in weighted:
            posting = bm.postings.get(term, [])
            w = lexical.idf(bm.n, len(posting))
            for j, tf in posting:
                scores[j] += weight * lexical.term_score(w, tf, bm.lengths[j], bm.avg)
        top = np.flatnonzero(scores > 0)
        top = top[np.argsort(-scores[top], kind="stable")][:200]
        return [(int(j), float(scores[j])) for j in top]

    def rm3(self, i: int, m: int, terms: int, weight: float) -> Pairs:
        """BM25 of the question's terms plus ``terms`` expansion terms from the top ``m``
        dense chunks, each at ``weight``."""
        query = lexical.query_terms(self.s.questions[i]["question"])
        mass: Counter[str] = Counter()
        for j, _ in self.s.dense[i][:m]:
            counts = self.terms[j]
            length = sum(counts.values()) or 1
            for term, tf in counts.items():
                mass[term] += (
                    tf / length * lexical.idf(self.bm25.n, len(self.bm25.postings.get(term, [])))
                )
        extra = [t for t, _ in mass.most_common() if t not in query][:terms]
        return self.bm25_weighted([(t, 1.0) for t in query] + [(t, weight) for t in extra])

    def rocchio(self, i: int, source: Pairs, m: int, beta: float) -> Pairs:
        rows = [j for j, _ in source[:m]]
        q = self.s.query_m[i] + (beta * self.s.chunk_m[rows].mean(axis=0) if rows else 0.0)
        return self.s.top(self.s.chunk_m @ (q / np.linalg.norm(q)))

    def convex(self, i: int, beta: float, gamma: float = 0.0, depth: int = 40) -> Pairs:
        """Raw cosine (+ ``gamma`` x the document prior) + ``beta`` x BM25 / its maximum,
        over the union of both candidate lists."""
        q = self.s.query_m[i]
        cos = self.s.chunk_m @ q + gamma * (self.centroids @ q)[self.doc_of]
        lex = dict(self.lex[i][:depth])
        best = max(lex.values(), default=1.0)
        union = dict.fromkeys([*(j for j, _ in self.s.dense[i][:depth]), *lex])
        return ordered({j: float(cos[j]) + beta * lex.get(j, 0.0) / best for j in union})

    def gated(self, i: int, alpha: float) -> list[Hit]:
        hits = self.s.hits
        return fuse(
            hits(self.s.dense[i][:40]), hits(self.lex[i][:40]), k=K, fusion="gated", alpha=alpha
        )

    def second_best(self, i: int, gamma: float, depth: int = 40) -> Pairs:
        pool = self.s.dense[i][:depth]
        by_doc: dict[int, list[float]] = {}
        for j, score in pool:
            by_doc.setdefault(int(self.doc_of[j]), []).append(score)
        second = {d: (v[1] if len(v) > 1 else 0.0) for d, v in by_doc.items()}
        return ordered({j: s + gamma * second[int(self.doc_of[j])] for j, s in pool})

    async def embed_sentences(self) -> None:
        split = [sentences(t) for t in self.s.texts]
        unique = list(dict.fromkeys(p for parts in split for p in parts))
        index = {p: n for n, p in enumerate(unique)}
        self.sentence_m = await self.s.embed(unique)
        self.sentences_of = [[index[p] for p in parts] for parts in split]

    def max_sim(
        self, i: int, first: Pairs, pool: int, w: float, mix: float = 1.0, gamma: float = 0.0
    ) -> Pairs:
        """The first ``pool`` of ``first`` re-scored by ``mix`` x best sentence cosine +
        (1 - mix) x chunk cosine + ``gamma`` x document prior + ``w`` x normalised
        first-stage score; the rest keep their order below."""
        q = self.s.query_m[i]
        sentence = self.sentence_m @ q
        prior = (self.centroids @ q)[self.doc_of]
        head = first[:pool]
        firsts = np.array([s for _, s in head])
        spread = firsts.max() - firsts.min()
        norm = (firsts - firsts.min()) / spread if spread > 0 else np.ones(len(head))
        rescored = {
            j: mix * float(sentence[self.sentences_of[j]].max())
            + (1 - mix) * float(self.s.chunk_m[j] @ q)
            + gamma * float(prior[j])
            + w * float(n)
            for (j, _), n in zip(head, norm, strict=True)
        }
        return [*ordered(rescored), *first[pool:]]


async def measure() -> list[Row]:
    setup = await Setup(MiniLMEmbedder(), load()["questions"]).load()
    r = Round2(setup)
    n = range(len(setup.questions))
    hits, dense, lex = setup.hits, setup.dense, r.lex

    def hybrid(lexical_pairs: list[Pairs], alpha: float = 0.7) -> list[list[Hit]]:
        return [
            fuse(
                hits(dense[i][:40]),
                hits(lexical_pairs[i][:40]),
                k=K,
                fusion="weighted",
                alpha=alpha,
            )
            for i in n
        ]

    rm3 = [r.rm3(i, 3, 20, 0.2) for i in n]
    by_alpha = [hybrid(lex, a / 10) for a in range(11)]
    await r.embed_sentences()
    table: list[tuple[str, Any]] = [
        ("dense", r.each(lambda i: dense[i])),
        ("lexical (BM25)", r.each(lambda i: lex[i])),
        ("**hybrid weighted a 0.7, 40 per path (the default before `gated`)**", hybrid(lex)),
        (
            "ceiling: the better of dense and lexical per question (hindsight)",
            hindsight(setup.questions, [r.each(lambda i: dense[i]), r.each(lambda i: lex[i])]),
        ),
        (
            "ceiling: weighted fusion at the best alpha per question (hindsight)",
            hindsight(setup.questions, by_alpha),
        ),
        ("lexical + RM3 from the top 3 dense hits (20 terms, weight 0.2)", r.each(rm3.__getitem__)),
        ("hybrid a 0.7 with that expanded BM25", hybrid(rm3)),
        ("hybrid a 0.5 with that expanded BM25", hybrid(rm3, 0.5)),
        (
            "dense, Rocchio from its top 5 (beta 0.5)",
            r.each(lambda i: r.rocchio(i, dense[i], 5, 0.5)),
        ),
        (
            "dense, Rocchio from the top 3 BM25 hits (beta 0.3)",
            r.each(lambda i: r.rocchio(i, lex[i], 3, 0.3)),
        ),
        ("cosine + 0.02 x BM25/max, union of 40 + 40", r.each(lambda i: r.convex(i, 0.02))),
        ("cosine + 0.05 x BM25/max, union of 40 + 40", r.each(lambda i: r.convex(i, 0.05))),
        (
            "**`gated` fusion a 0.7 (BM25 only when its top1 >= 1.4 x top2, else dense; "
            "the default)**",
            [r.gated(i, 0.7) for i in n],
        ),
        ("dense + 0.2 x document-centroid cosine", r.each(lambda i: r.convex(i, 0.0, 0.2))),
        ("dense + 0.3 x document-centroid cosine", r.each(lambda i: r.convex(i, 0.0, 0.3))),
        ("dense + 0.3 x centroid + 0.05 x BM25/max", r.each(lambda i: r.convex(i, 0.05, 0.3))),
        (
            "dense + 0.05 x the document's second-best candidate",
            r.each(lambda i: r.second_best(i, 0.05)),
        ),
        (
            "dense -> best-sentence cosine over the top 20",
            r.each(lambda i: r.max_sim(i, dense[i], 20, 0.0)),
        ),
        (
            "dense -> best sentence + 0.2 x first stage, top 20",
            r.each(lambda i: r.max_sim(i, dense[i], 20, 0.2)),
        ),
        (
            "dense -> best sentence + 0.1 x first stage, top 40",
            r.each(lambda i: r.max_sim(i, dense[i], 40, 0.1)),
        ),
        (
            "dense -> 0.5 sentence + 0.5 chunk + 0.3 centroid, top 20",
            r.each(lambda i: r.max_sim(i, dense[i], 20, 0.0, mix=0.5, gamma=0.3)),
        ),
    ]
    return setup.measured(table)


def main() -> None:
    print_table(asyncio.run(measure()))


if __name__ == "__main__":
    main()
