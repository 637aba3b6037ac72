"""Garbage-collector settings for long-running lanewise processes (gateway workers, sidecars)."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Net allocations of tracked objects before a young-generation collection (default 700)."""


def freeze_startup_heap() -> None:
    """Move everything built at start-up out of the garbage collector's sight.

    The lanes import large libraries (numpy, onnxruntime, faiss); every full
    collection would walk those objects again, which measured ~10-15 µs of CPU per
    request (bench/inference/spine_overhead.py). They live as long as the process.

    It also lets the young generation grow to :data:`YOUNG_THRESHOLD` objects: under
    load the requests in flight alone hold more than the default 700, so a collection
    ran every few dozen requests, walking and promoting objects that die a moment later
    (13 µs of CPU per request with 15 requests in flight, none at 10 000:
    ``python -m bench.observe.instructions --native --concurrency 15 --before REF``).
    Garbage cycles are still collected, after 10 000 net allocations instead of 700.
    A threshold the operator set higher is kept.
    """
    gc.collect()
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), older, oldest)
