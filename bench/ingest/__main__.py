"""``python -m bench.ingest``: the ingest lane's benchmark (see ``pipeline_bench``)."""

from __future__ import annotations

import sys

from bench.ingest import pipeline_bench

sys.exit(pipeline_bench.main(sys.argv[1:]))
