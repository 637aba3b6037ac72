"""Cache benchmark of the retriever: result-cache hit and embedding-cache hit vs a miss.

One process, one thread (OMP_NUM_THREADS=1), the real pieces: MiniLM int8 on
onnxruntime, the embedded store (``--n`` rows, 384-d, faiss HNSW behind
SQLite), MMR reranking, and the cache in process or in a real ``redis-server``
started for the run. For each backend, three passes over ``--queries``
distinct questions:

1. miss: empty caches: embed + search + rerank;
2. embedding hit: one upsert bumps the index version, so results miss but the
   query embeddings are cached: search + rerank;
3. result hit: the same questions again: one index-version read + one lookup.

Reported: p50/p95 per pass and the ratios ``hit / miss`` and
``embedding-hit / miss`` of the p50s, measured in the same run.

Targets: a result hit costs <= 0.1x a miss in process and <= 0.2x with Redis;
an embedding hit saves at least the embedder's share (ratio <= 0.7).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m bench.retrieval.cache_bench [--n 20000]``.
Writes ``bench/results/retrieval_cache.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from lanewise.core.types import Principal
from lanewise.retrieval.caches import MemoryStore, RedisStore, RetrievalCache
from lanewise.retrieval.embedders.minilm import MiniLMEmbedder
from lanewise.retrieval.rerank import MMRReranker
from lanewise.retrieval.retriever import SearchRetriever
from lanewise.retrieval.stores import EmbeddedStore, IndexParams

RESULTS = Path(__file__).resolve().parents[1] / "results"
WORDS = [
    "lane",
    "gateway",
    "token",
    "budget",
    "tenant",
    "vector",
    "index",
    "cache",
    "embed",
    "rerank",
    "stream",
    "model",
    "triton",
    "redis",
    "celery",
    "worker",
    "queue",
    "chunk",
    "loader",
    "prompt",
    "citation",
    "latency",
    "recall",
]
PRINCIPAL = Principal(tenant="bench")


def embedding_like(n: int, *, dim: int = 384, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors of low intrinsic dimension (searching pure noise is unrealistic)."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(12345).standard_normal((32, dim))
    centres = np.random.default_rng(54321).standard_normal((500, 32))
    latent = centres[rng.integers(0, 500, n)] + 0.3 * rng.standard_normal((n, 32))
    vectors = (latent @ basis).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def questions(n: int, seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"How does the {' '.join(rng.choice(WORDS, size=4))} work? (#{i})" for i in range(n)]


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000.0, q))


async def one_pass(retriever: SearchRetriever, qs: list[str], k: int) -> list[float]:
    times = []
    for q in qs:
        t0 = time.perf_counter()
        await retriever.retrieve(principal=PRINCIPAL, query=q, k=k)
        times.append(time.perf_counter() - t0)
    return times


async def run_backend(
    name: str, cache: RetrievalCache, store: EmbeddedStore, embedder: Any, qs: list[str], k: int
) -> dict[str, Any]:
    retriever = SearchRetriever(
        embedder=embedder, store=store, reranker=MMRReranker(), cache=cache, max_k=100
    )
    await one_pass(retriever, qs[:10], k)  # warm-up on other keys' code paths
    miss = await one_pass(retriever, qs[10:], k)
    vec = embedding_like(1, dim=384, seed=99)[0].tolist()
    await store.upsert(
        tenant=PRINCIPAL.tenant, ids=["bump"], vectors=[vec], texts=["x"], metadata=[{}]
    )
    embed_hit = await one_pass(retriever, qs[10:], k)
    hit = await one_pass(retriever, qs[10:], k)
    out: dict[str, Any] = {"backend": name}
    for label, xs in (("miss", miss), ("embedding_hit", embed_hit), ("result_hit", hit)):
        out[label] = {"p50_ms": pct(xs, 50), "p95_ms": pct(xs, 95), "n": len(xs)}
    out["ratio_result_hit_vs_miss_p50"] = out["result_hit"]["p50_ms"] / out["miss"]["p50_ms"]
    out["ratio_embedding_hit_vs_miss_p50"] = out["embedding_hit"]["p50_ms"] / out["miss"]["p50_ms"]
    out["counters"] = cache.counters()
    return out


async def bench(n: int, queries: int, k: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="lanewise-cache-bench-"))
    embedder = MiniLMEmbedder()
    store = EmbeddedStore(workdir / "vectors.sqlite3", IndexParams(dimension=384))
    vectors = embedding_like(n, dim=384, seed=1)
    rng = np.random.default_rng(3)
    for start in range(0, n, 5000):
        block = vectors[start : start + 5000]
        await store.upsert(
            tenant=PRINCIPAL.tenant,
            ids=[f"d{i}" for i in range(start, start + len(block))],
            vectors=block.tolist(),
            texts=[" ".join(rng.choice(WORDS, size=30)) for _ in range(len(block))],
            metadata=[{"i": i} for i in range(start, start + len(block))],
        )
    qs = questions(queries + 10)
    results = [await run_backend("memory", RetrievalCache(MemoryStore()), store, embedder, qs, k)]
    redis_bin = shutil.which("redis-server")
    if redis_bin is not None:
        from lanewise.core.testing.services import RedisServer

        server = RedisServer(workdir / "redis").start()
        cache = RetrievalCache(RedisStore(server.url))
        try:
            results.append(await run_backend("redis", cache, store, embedder, qs, k))
        finally:
            await cache.aclose()
            server.stop()
    await store.aclose()
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "retrieval_cache",
        "rows": n,
        "queries": queries,
        "k": k,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "targets": {
            "memory_result_hit_ratio": 0.1,
            "redis_result_hit_ratio": 0.2,
            "embedding_hit_ratio": 0.7,
        },
        "backends": results,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["miss", "embedding_hit", "result_hit"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for j, backend in enumerate(result["backends"]):
        p50 = [backend[label]["p50_ms"] for label in labels]
        p95 = [backend[label]["p95_ms"] for label in labels]
        xs = np.arange(len(labels)) + j * width
        ax.bar(xs, p50, width, label=f"{backend['backend']} p50")
        ax.scatter(xs, p95, marker="_", s=300, color="black", zorder=3)
    ax.set_xticks(np.arange(len(labels)) + width / 2)
    ax.set_xticklabels(["miss", "embedding hit", "result hit"])
    ax.set_yscale("log")
    ax.set_ylabel("latency per query, ms (bar p50, tick p95)")
    ax.set_title(f"retriever cache, {result['rows']} rows, k={result['k']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args(argv)
    result = asyncio.run(bench(args.n, args.queries, args.k))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrieval_cache.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / "retrieval_cache.png")
    for backend in result["backends"]:
        print(
            f"{backend['backend']:>6}: miss p50 {backend['miss']['p50_ms']:.2f} ms, "
            f"embedding hit {backend['embedding_hit']['p50_ms']:.2f} ms "
            f"({backend['ratio_embedding_hit_vs_miss_p50']:.3f}x), "
            f"result hit {backend['result_hit']['p50_ms']:.3f} ms "
            f"({backend['ratio_result_hit_vs_miss_p50']:.3f}x)"
        )
    return result


if __name__ == "__main__":
    main()
