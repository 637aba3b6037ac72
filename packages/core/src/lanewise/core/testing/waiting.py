"""Poll until a condition holds: tests wait on what they need, never on a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.1,
) -> T:
    """Call ``probe`` until ``done`` accepts its value or ``timeout`` seconds pass.

    Returns the last value either way, so the caller's assertion shows what was seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)
