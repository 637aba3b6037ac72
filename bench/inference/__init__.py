"""Inference lane benchmarks (``python -m bench.inference``)."""
