"""``python -m bench.retrieval``: the retrieval lane's benchmarks (see each module's docstring).

``compare_candidates`` is not run here: it needs the candidates installed in a
throwaway venv (its docstring says how).
"""

from __future__ import annotations

from bench.retrieval import cache_bench, index_bench

index_bench.main()
cache_bench.main([])
