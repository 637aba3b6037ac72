"""``python -m bench.retrieval [--http] [--quality] [--fairness]``: the retrieval lane's benchmarks.

Always: ``index_bench``, ``cache_bench`` and ``hybrid_bench`` (hybrid vs dense
cost at 200k chunks, filtered recall). ``--http`` adds ``http_bench``
(``/v1/retrieve`` under load vs in process; minutes: a 200k-vector store is
built once, then about two minutes of load). ``--quality`` adds ``quality``
(dense / lexical / hybrid / rerank on the stdlib golden set; minutes: it embeds
1840 chunks with MiniLM). ``--fairness`` adds ``fairness_bench`` (another
tenant's ``/v1/retrieve`` while one saturates ``/v1/embeddings``; a few minutes
of MiniLM on the CPU).

``compare_candidates`` is not run here: it needs the candidates installed in a
throwaway venv (its docstring says how).
"""

from __future__ import annotations

import sys

from bench.retrieval import (
    cache_bench,
    fairness_bench,
    http_bench,
    hybrid_bench,
    index_bench,
    quality,
)

flags = {flag: flag in sys.argv for flag in ("--http", "--quality", "--fairness")}
for flag, present in flags.items():
    if present:
        sys.argv.remove(flag)  # the other options belong to index_bench
index_bench.main()
cache_bench.main([])
hybrid_bench.main([])
if flags["--quality"]:
    quality.main([])
if flags["--http"]:
    http_bench.main([])
if flags["--fairness"]:
    fairness_bench.main([])
