"""The serving worker's garbage-collector settings (in a child: they are process-wide)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import gc, sys, weakref
    from lanewise.core.heap import YOUNG_THRESHOLD, freeze_startup_heap

    if sys.argv[1] == "custom":
        gc.set_threshold(50_000, 10, 10)
    before = gc.get_freeze_count()
    freeze_startup_heap()
    print(gc.get_threshold()[0], gc.get_freeze_count() > before, YOUNG_THRESHOLD)

    class Node:
        pass

    # Cycles only the collector frees: they must still go, without a gc.collect() call.
    freed = []
    for _ in range(5 * YOUNG_THRESHOLD):
        a, b = Node(), Node()
        a.other, b.other = b, a
        weakref.finalize(a, freed.append, 1)
    print(len(freed) > 0)
    """
)


def run_child(mode: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def test_young_generation_raised_and_startup_heap_frozen() -> None:
    threshold, frozen, wanted, cycles_freed = run_child("default")
    assert int(threshold) == int(wanted) == 10_000
    assert frozen == "True"
    assert cycles_freed == "True"


def test_a_higher_threshold_set_by_the_operator_is_kept() -> None:
    threshold, *_ = run_child("custom")
    assert int(threshold) == 50_000
