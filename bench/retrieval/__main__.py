"""``python -m bench.retrieval [--http]``: the retrieval lane's benchmarks (see each module).

``--http`` adds ``http_bench`` (``/v1/retrieve`` under load vs in process); it is
off by default because it takes minutes (a 200k-vector store is built once and
kept in the temp directory, then about two minutes of load).

``compare_candidates`` is not run here: it needs the candidates installed in a
throwaway venv (its docstring says how).
"""

from __future__ import annotations

import sys

from bench.retrieval import cache_bench, http_bench, index_bench

with_http = "--http" in sys.argv
if with_http:
    sys.argv.remove("--http")  # the other options belong to index_bench
index_bench.main()
cache_bench.main([])
if with_http:
    http_bench.main([])
