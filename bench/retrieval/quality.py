"""Retrieval quality on a real corpus: dense vs lexical vs hybrid vs hybrid + rerank.

Corpus and golden set: :mod:`bench.retrieval.golden` (Python standard library
docstrings, 94 documents; 94 hand-written questions, 81 of them paraphrases
that avoid the answer's distinctive words, each with an exact evidence
passage). Documents are cut the way the ingest lane cuts Markdown by default (sections
at headings, the heading's words leading each section, then the ``tokens``
chunker: 200 tokens, 20 overlap), embedded with the default MiniLM and stored
in the default embedded store. Every mode runs through the real ``SearchRetriever``
(no cache), one process, one thread, in one run:

- ``dense``: vectors only; ``dense+mmr``: the old default (MMR over 4x candidates);
- ``lexical``: BM25 only;
- ``hybrid-rrf``: both, fused by textbook RRF (``alpha = 0.5``, ``rrf_k = 60``);
- ``hybrid-weighted``, ``hybrid-gated``: both, weighted fusion at ``alpha = 0.7``, and
  the ``gated`` fusion (the lexical side only when BM25 has a clear winner) at the same
  ``alpha``; ``gated+mmr``: that, then the ``mmr`` reranker;
- ``default``: what a user gets without configuring anything: hybrid with the
  default fusion (weighted, ``alpha = 0.7``), then the default ``mmr`` reranker;
- ``hybrid``: both, with the fusion and ``alpha`` chosen on the *tuning half* of
  the questions (odd-numbered) by MRR@10 from a sweep; its figures on the
  *held-out half* (even-numbered) are reported beside the full set, so the
  choice is not graded on the questions it was tuned on;
- ``hybrid+rerank``: that hybrid with the ``passages`` reranker (best
  paragraph's MiniLM cosine) over 4x candidates, re-scoring the first 20;
  latency cold (empty passage cache) and warm (second pass);
- ``dense+rerank``: the same reranker over dense candidates.

Measures (document level: a hit counts when it is a chunk of the question's
document): recall@1/5/10, MRR@10, and evidence@5 (the exact evidence passage is
inside one of the top 5 chunks). Latency: p50 of ``retrieve`` per mode (query
embedding included, except lexical which embeds nothing) and the added p50 vs
dense.

Targets (issue 12): hybrid's MRR@10 beats the better of dense and lexical by
>= 0.05 and its recall@5 is >= 0.95.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m bench.retrieval.quality`` (``--skip-passages``
leaves out the two ``+rerank`` rows, most of the run's time).
Writes ``bench/results/retrieval_quality.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from lanewise.core.types import Hit, Principal
from lanewise.ingest.blobs import Blob
from lanewise.ingest.chunker import TokenChunker
from lanewise.ingest.loaders import MarkdownLoader
from lanewise.ingest.pipeline import anchor
from lanewise.retrieval.embedders.minilm import MiniLMEmbedder
from lanewise.retrieval.rerank import MMRReranker, PassageReranker
from lanewise.retrieval.retriever import SearchRetriever
from lanewise.retrieval.stores import EmbeddedStore, IndexParams

from bench.retrieval.golden import corpus, load, normalise

RESULTS = Path(__file__).resolve().parents[1] / "results"
TENANT = Principal(tenant="stdlib")
K = 10


def chunks(docs: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """Each document cut as the ingest lane cuts Markdown by default: sections at headings
    (heading path in the metadata, the heading's words leading the section), then the
    ``tokens`` chunker (200 tokens, 20 overlap)."""
    loader, chunker = MarkdownLoader(), TokenChunker()
    out: list[tuple[str, str, dict[str, Any]]] = []
    for name, text in docs.items():
        blob = Blob(name=f"{name}.md", data=text.encode())
        base = {"doc": name, "title": loader.title(blob) or name}
        for section in loader.sections(blob):
            source = blob.name + anchor(section.metadata)
            for piece in chunker.pieces(section.text):
                meta = {**base, **section.metadata, "source": source}
                out.append((f"{name}#{len(out)}", piece.text, meta))
    return out


async def index(store: EmbeddedStore, embedder: MiniLMEmbedder, rows: list[Any]) -> None:
    for start in range(0, len(rows), 64):
        batch = rows[start : start + 64]
        await store.upsert(
            tenant=TENANT.tenant,
            ids=[r[0] for r in batch],
            vectors=await embedder.embed([r[1] for r in batch]),
            texts=[r[1] for r in batch],
            metadata=[r[2] for r in batch],
        )


def score(questions: list[dict[str, Any]], results: list[list[Hit]]) -> dict[str, float]:
    r1 = r5 = r10 = rr = ev5 = 0.0
    for q, hits in zip(questions, results, strict=True):
        docs = [h.metadata["doc"] for h in hits[:K]]
        first = docs.index(q["doc"]) + 1 if q["doc"] in docs else None
        r1 += first == 1
        r5 += first is not None and first <= 5
        r10 += first is not None
        rr += 1.0 / first if first else 0.0
        evidence = normalise(q["evidence"])
        ev5 += any(evidence in normalise(h.text) for h in hits[:5])
    n = len(questions)
    return {
        "recall@1": r1 / n,
        "recall@5": r5 / n,
        "recall@10": r10 / n,
        "mrr@10": rr / n,
        "evidence@5": ev5 / n,
    }


async def run_mode(
    retriever: SearchRetriever,
    questions: list[dict[str, Any]],
    options: dict[str, Any],
    *,
    warm_up: bool = True,
) -> tuple[list[list[Hit]], list[float]]:
    for q in questions[:5] if warm_up else []:
        await retriever.retrieve(principal=TENANT, query=q["question"], k=K, **options)
    results, latencies = [], []
    for q in questions:
        t0 = time.perf_counter()
        hits = await retriever.retrieve(principal=TENANT, query=q["question"], k=K, **options)
        latencies.append(time.perf_counter() - t0)
        results.append(hits)
    return results, latencies


SWEEP = [
    (fusion, alpha)
    for fusion in ("rrf", "weighted", "gated")
    for alpha in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
]


def halves(questions: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """(tuning, held-out) indices: odd- and even-numbered questions."""
    return list(range(1, len(questions), 2)), list(range(0, len(questions), 2))


def subset(items: list[Any], indices: list[int]) -> list[Any]:
    return [items[i] for i in indices]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    golden = load()
    questions = golden["questions"]
    tune, held = halves(questions)
    docs = corpus()
    rows = chunks(docs)
    embedder = MiniLMEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore(Path(tmp) / "v.sqlite3", IndexParams(dimension=embedder.dimension))
        t0 = time.perf_counter()
        await index(store, embedder, rows)
        index_s = time.perf_counter() - t0

        def retriever(reranker: Any = None) -> SearchRetriever:
            return SearchRetriever(embedder=embedder, store=store, reranker=reranker, max_k=K)

        plain = retriever()
        sweep: dict[str, Any] = {}
        for fusion, alpha in SWEEP:
            results, _ = await run_mode(
                plain, questions, {"mode": "hybrid", "fusion": fusion, "alpha": alpha}
            )
            sweep[f"{fusion}/{alpha}"] = {
                "tuning": score(subset(questions, tune), subset(results, tune)),
                "held_out": score(subset(questions, held), subset(results, held)),
            }
        fusion, alpha = max(SWEEP, key=lambda fa: sweep[f"{fa[0]}/{fa[1]}"]["tuning"]["mrr@10"])
        chosen = {"mode": "hybrid", "fusion": fusion, "alpha": alpha}
        reranker = PassageReranker(embedder)
        configs: dict[str, tuple[SearchRetriever, dict[str, Any]]] = {
            "dense": (plain, {"mode": "dense"}),
            "dense+mmr": (retriever(MMRReranker()), {"mode": "dense"}),
            "lexical": (plain, {"mode": "lexical"}),
            "hybrid-rrf": (plain, {"mode": "hybrid", "fusion": "rrf", "alpha": 0.5}),
            "hybrid-weighted": (plain, {"mode": "hybrid", "fusion": "weighted", "alpha": 0.7}),
            "hybrid-gated": (plain, {"mode": "hybrid", "fusion": "gated", "alpha": 0.7}),
            "gated+mmr": (
                retriever(MMRReranker()),
                {"mode": "hybrid", "fusion": "gated", "alpha": 0.7},
            ),
            "default": (retriever(MMRReranker()), {}),
            "hybrid": (plain, chosen),
            "hybrid+rerank": (retriever(reranker), chosen),
            "dense+rerank": (retriever(PassageReranker(embedder)), {"mode": "dense"}),
        }
        if args.skip_passages:
            del configs["hybrid+rerank"], configs["dense+rerank"]
        table: dict[str, Any] = {}
        for name, (engine, options) in configs.items():
            cold = None
            if name.endswith("+rerank"):
                _, cold = await run_mode(engine, questions, options, warm_up=False)
            results, latencies = await run_mode(engine, questions, options)
            table[name] = {
                **score(questions, results),
                "held_out": score(subset(questions, held), subset(results, held)),
                "p50_ms": 1e3 * statistics.median(latencies),
                "mean_ms": 1e3 * statistics.fmean(latencies),
                "by_kind": {
                    kind: score(
                        [q for q in questions if q["kind"] == kind],
                        [r for q, r in zip(questions, results, strict=True) if q["kind"] == kind],
                    )
                    for kind in ("paraphrase", "exact")
                },
            }
            if cold is not None:
                table[name]["cold_p50_ms"] = 1e3 * statistics.median(cold)
        await store.aclose()
    dense_p50 = table["dense"]["p50_ms"]
    for row in table.values():
        row["added_p50_ms_vs_dense"] = row["p50_ms"] - dense_p50
    targets = {}
    for part in ("all", "held_out"):

        def pick(name: str, metric: str, part: str = part) -> float:
            row = table[name] if part == "all" else table[name]["held_out"]
            return float(row[metric])

        best = max(pick("dense", "mrr@10"), pick("lexical", "mrr@10"))
        targets[part] = {
            f"{name}_{key}": value
            for name in ("hybrid", "default", "hybrid+rerank")
            if name in table
            for key, value in (
                ("mrr_gain_vs_best_single", pick(name, "mrr@10") - best),
                ("recall@5", pick(name, "recall@5")),
            )
        }
    return {
        "corpus": golden["corpus"],
        "python": golden["python"],
        "documents": len(docs),
        "chunks": len(rows),
        "questions": len(questions),
        "paraphrase": sum(q["kind"] == "paraphrase" for q in questions),
        "index_s": index_s,
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "chosen_on_tuning_half": chosen,
        "modes": table,
        "sweep": sweep,
        "targets": targets,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["modes"])
    metrics = ["recall@1", "recall@5", "recall@10", "mrr@10", "evidence@5"]
    fig, (ax, lat) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [result["modes"][name][m] for m in metrics]
        ax.bar([x + i * width for x in range(len(metrics))], values, width, label=name)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(metrics))], metrics)
    ax.set_ylim(0, 1)
    ax.set_title(
        f"{result['questions']} questions ({result['paraphrase']} paraphrases), "
        f"{result['chunks']} chunks of Python stdlib docstrings"
    )
    ax.legend(fontsize=8, ncol=3, loc="lower right")
    lat.barh(names, [result["modes"][n]["p50_ms"] for n in names], color="grey")
    lat.set_xlabel("p50 latency per query, ms (1 thread)")
    lat.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-passages",
        action="store_true",
        help="leave out the passages reranker's rows (seconds per query on a cold cache)",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "retrieval_quality.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out.with_suffix(".png"))
    header = ("R@1", 6), ("R@5", 6), ("R@10", 6), ("MRR@10", 8), ("Ev@5", 6), ("p50 ms", 8)
    print(f"{'mode':<16}" + "".join(f"{h:>{w}}" for h, w in header) + f"{'+ms':>7}")
    for name, row in result["modes"].items():
        print(
            f"{name:<16}{row['recall@1']:6.2f}{row['recall@5']:6.2f}{row['recall@10']:6.2f}"
            f"{row['mrr@10']:8.3f}{row['evidence@5']:6.2f}{row['p50_ms']:8.1f}"
            f"{row['added_p50_ms_vs_dense']:+7.1f}"
            + (f"  (cold cache {row['cold_p50_ms']:.1f})" if "cold_p50_ms" in row else "")
        )
    print(f"hybrid = {result['chosen_on_tuning_half']} (chosen on the tuning half)")
    print("held-out half:")
    for name, row in result["modes"].items():
        h = row["held_out"]
        print(
            f"  {name:<14} R@1 {h['recall@1']:.2f} R@5 {h['recall@5']:.2f} MRR@10 {h['mrr@10']:.3f}"
        )
    for part, t in result["targets"].items():
        for name in ("hybrid", "default", "hybrid+rerank"):
            if f"{name}_recall@5" in t:
                print(
                    f"{part}: {name} MRR@10 - best single "
                    f"{t[f'{name}_mrr_gain_vs_best_single']:+.3f} (target >= +0.05); "
                    f"recall@5 {t[f'{name}_recall@5']:.2f} (target >= 0.95)"
                )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
