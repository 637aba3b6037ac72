"""``python -m bench.retrieval [--http] [--fairness]``: the retrieval lane's benchmarks.

``--http`` adds ``http_bench`` (``/v1/retrieve`` under load vs in process); it is
off by default because it takes minutes (a 200k-vector store is built once and
kept in the temp directory, then about two minutes of load). ``--fairness`` adds
``fairness_bench`` (another tenant's ``/v1/retrieve`` while one saturates
``/v1/embeddings``; a few minutes of MiniLM on the CPU).

``compare_candidates`` is not run here: it needs the candidates installed in a
throwaway venv (its docstring says how).
"""

from __future__ import annotations

import sys

from bench.retrieval import cache_bench, fairness_bench, http_bench, index_bench

with_http = "--http" in sys.argv
with_fairness = "--fairness" in sys.argv
for flag in ("--http", "--fairness"):
    if flag in sys.argv:
        sys.argv.remove(flag)  # the other options belong to index_bench
index_bench.main()
cache_bench.main([])
if with_http:
    http_bench.main([])
if with_fairness:
    fairness_bench.main([])
