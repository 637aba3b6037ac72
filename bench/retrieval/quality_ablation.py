"""What each idea to lift hybrid retrieval is worth on the golden set, one at a time.

Same corpus, chunks, MiniLM embeddings and questions as :mod:`bench.retrieval.quality`,
but ranked outside the store so that variants the store does not implement can be
compared: dense is exact cosine over all chunks (what the embedded store returns below
4 000 rows), lexical is BM25 (k1 1.2, b 0.75, the store's formula) under a given
analyzer, fusion is :func:`lanewise.retrieval.fusion.fuse` or a variant. Each row
reports the document-level measures of ``quality.py`` on all questions and MRR@10 on
the tuning (odd) and held-out (even) halves.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m bench.retrieval.quality_ablation``
(prints a Markdown table; docs/retrieval.md quotes it).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from lanewise.core.types import Hit
from lanewise.retrieval import lexical
from lanewise.retrieval.embedders.minilm import MiniLMEmbedder
from lanewise.retrieval.fusion import fuse

from bench.retrieval.golden import corpus, load
from bench.retrieval.quality import K, chunks, halves, score, subset

Analyzer = Callable[[str], list[str]]

_FIRST = "a an and are as at be by for from has have in into is it its of on or that the this to"
FIRST_STOPWORDS = frozenset(f"{_FIRST} was were will with".split())
"""The first analyzer's stopwords (28, Lucene-like)."""
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def plural_stem(token: str) -> str:
    """The first analyzer's stemmer: Harman's "S" stemmer (plural endings only)."""
    if len(token) > 3 and token.endswith("ies") and not token.endswith(("eies", "aies")):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("es") and not token.endswith(("aes", "ees", "oes")):
        return token[:-1]
    if len(token) > 2 and token.endswith("s") and not token.endswith(("us", "ss")):
        return token[:-1]
    return token


def analyzer(
    stopwords: frozenset[str], stem: Callable[[str], str], camel: bool = False
) -> Analyzer:
    def analyse(text: str) -> list[str]:
        out = []
        for word in re.findall(r"[^\W_]+", text):
            parts = [word, *(_CAMEL.findall(word) if camel else [])]
            for part in dict.fromkeys(parts) if camel else parts:
                low = part.lower()
                if low not in stopwords:
                    out.append(stem(low))
        return out

    return analyse


class BM25:
    def __init__(self, texts: Sequence[str], analyse: Analyzer) -> None:
        self.analyse = analyse
        counts = [Counter(analyse(t)) for t in texts]
        self.n = len(texts)
        self.lengths = np.array([sum(c.values()) for c in counts], dtype=float)
        self.avg = float(self.lengths.mean())
        self.postings: dict[str, list[tuple[int, int]]] = {}
        for i, c in enumerate(counts):
            for term, tf in c.items():
                self.postings.setdefault(term, []).append((i, tf))

    def rank(self, query: str, depth: int) -> list[tuple[int, float]]:
        scores = np.zeros(self.n)
        for term in dict.fromkeys(self.analyse(query)):
            posting = self.postings.get(term, [])
            w = lexical.idf(self.n, len(posting))
            for i, tf in posting:
                scores[i] += lexical.term_score(w, tf, self.lengths[i], self.avg)
        top = np.flatnonzero(scores > 0)
        top = top[np.argsort(-scores[top], kind="stable")][:depth]
        return [(int(i), float(scores[i])) for i in top]


def zscore_fuse(dense: list[Hit], lex: list[Hit], alpha: float) -> list[Hit]:
    def z(hits: list[Hit]) -> dict[str, float]:
        if not hits:
            return {}
        s = np.array([h.score for h in hits])
        return {h.id: (h.score - s.mean()) / (s.std() or 1.0) for h in hits}

    dz, lz = z(dense), z(lex)
    floor_d, floor_l = min(dz.values(), default=0.0), min(lz.values(), default=0.0)
    by_id = {h.id: h for h in [*lex, *dense]}
    fused = {i: alpha * dz.get(i, floor_d) + (1 - alpha) * lz.get(i, floor_l) for i in by_id}
    return [by_id[i] for i in sorted(fused, key=lambda i: -fused[i])]


def one_per_document(hits: list[Hit]) -> list[Hit]:
    seen: set[str] = set()
    out = []
    for h in hits:
        if h.metadata["doc"] not in seen:
            seen.add(h.metadata["doc"])
            out.append(h)
    return out


Row = tuple[str, dict[str, float], float, float]
"""(variant, measures on all questions, MRR@10 on the tuning half, on the held-out half)."""


class Setup:
    """The golden set's questions and chunks, embedded once, and exact dense rankings."""

    def __init__(self, embedder: MiniLMEmbedder, questions: list[dict[str, Any]]) -> None:
        self.embedder = embedder
        self.questions = questions
        self.rows = chunks(corpus())
        self.texts = [r[1] for r in self.rows]

    async def embed(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        vectors = []
        for start in range(0, len(texts), 64):
            vectors += await self.embedder.embed(texts[start : start + 64])
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    async def load(self) -> Setup:
        self.chunk_m = await self.embed(self.texts)
        self.query_m = await self.embed([q["question"] for q in self.questions])
        self.dense = [self.top(self.chunk_m @ q) for q in self.query_m]
        return self

    def top(self, scores: np.ndarray[Any, Any], depth: int = 200) -> list[tuple[int, float]]:
        order = np.argsort(-scores, kind="stable")[:depth]
        return [(int(i), float(scores[i])) for i in order]

    def hits(self, pairs: Sequence[tuple[int, float]]) -> list[Hit]:
        rows = self.rows
        return [Hit(id=rows[i][0], score=s, text=rows[i][1], metadata=rows[i][2]) for i, s in pairs]

    def measured(self, table: list[tuple[str, list[list[Hit]]]]) -> list[Row]:
        questions = self.questions
        tune, held = halves(questions)
        return [
            (
                name,
                score(questions, results),
                score(subset(questions, tune), subset(results, tune))["mrr@10"],
                score(subset(questions, held), subset(results, held))["mrr@10"],
            )
            for name, results in table
        ]


async def measure() -> list[Row]:
    setup = await Setup(MiniLMEmbedder(), load()["questions"]).load()
    questions, rows, texts, hits = setup.questions, setup.rows, setup.texts, setup.hits
    dense = [hits(pairs) for pairs in setup.dense]
    new = lexical.tokenize
    snowball = lexical.stem
    analyzers: dict[str, tuple[Analyzer, Sequence[str] | None]] = {
        "lexical, first analyzer (28 stopwords, plural folding)": (
            analyzer(FIRST_STOPWORDS, plural_stem),
            None,
        ),
        "lexical, first + 127-word stopword list": (
            analyzer(lexical.STOPWORDS, plural_stem),
            None,
        ),
        "lexical, first + Snowball stemmer": (analyzer(FIRST_STOPWORDS, snowball), None),
        "**lexical, new analyzer (both; the default)**": (new, None),
        "lexical, new + CamelCase splitting": (
            analyzer(lexical.STOPWORDS, snowball, camel=True),
            None,
        ),
        "lexical, new + heading path indexed with every chunk": (
            new,
            [
                f"{t}\n{' '.join(r[2].get('heading_path') or [])}"
                for t, r in zip(texts, rows, strict=True)
            ],
        ),
    }
    table: list[tuple[str, list[list[Hit]]]] = [("dense", [d[:K] for d in dense])]
    lexicals = {}
    for name, (analyse, indexed) in analyzers.items():
        bm25 = BM25(indexed or texts, analyse)
        lexicals[name] = [hits(bm25.rank(q["question"], 200)) for q in questions]
        table.append((name, [h[:K] for h in lexicals[name]]))
    first = lexicals["lexical, first analyzer (28 stopwords, plural folding)"]
    lex = lexicals["**lexical, new analyzer (both; the default)**"]
    n = range(len(questions))

    def fused(depth: int, **options: Any) -> list[list[Hit]]:
        return [fuse(dense[i][:depth], lex[i][:depth], k=depth, **options) for i in n]

    default = fused(40, fusion="weighted", alpha=0.7)
    table += [
        (
            "hybrid weighted a 0.7, 40 per path, first analyzer",
            [fuse(dense[i][:40], first[i][:40], k=K, fusion="weighted", alpha=0.7) for i in n],
        ),
        (
            "**hybrid weighted a 0.7, 40 per path (the default before `gated`)**",
            [h[:K] for h in default],
        ),
        (
            "hybrid weighted a 0.7, 100 per path",
            [h[:K] for h in fused(100, fusion="weighted", alpha=0.7)],
        ),
        (
            "hybrid weighted a 0.7, 200 per path",
            [h[:K] for h in fused(200, fusion="weighted", alpha=0.7)],
        ),
        ("hybrid z-score a 0.7", [zscore_fuse(dense[i][:40], lex[i][:40], 0.7)[:K] for i in n]),
        ("hybrid RRF a 0.5, k 60", [h[:K] for h in fused(40, fusion="rrf", alpha=0.5, rrf_k=60)]),
        ("hybrid RRF a 0.8, k 5", [h[:K] for h in fused(40, fusion="rrf", alpha=0.8, rrf_k=5)]),
        ("hybrid default, one chunk per document", [one_per_document(h)[:K] for h in default]),
        ("dense, one chunk per document", [one_per_document(d)[:K] for d in dense]),
    ]
    return setup.measured(table)


def print_table(rows: list[Row]) -> None:
    print(
        "| variant | R@1 | R@5 | R@10 | MRR@10 | evidence@5 | MRR tuning half | MRR held-out half |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, m, tune, held in rows:
        print(
            f"| {name} | {m['recall@1']:.2f} | {m['recall@5']:.2f} | {m['recall@10']:.2f} "
            f"| {m['mrr@10']:.3f} | {m['evidence@5']:.2f} | {tune:.3f} | {held:.3f} |"
        )


def main() -> None:
    print_table(asyncio.run(measure()))


if __name__ == "__main__":
    main()
