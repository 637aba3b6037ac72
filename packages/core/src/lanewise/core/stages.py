"""One ``lanewise_on_stage`` event per timed block, for the pipeline and any lane's stages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lanewise.core.events import notify
from lanewise.core.types import StageTiming


@contextmanager
def timed_stage(
    hook: Any, request_id: str, name: str, attributes: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Time the block and emit its :class:`StageTiming` through ``hook`` when it ends.

    Yields ``attributes`` for the block to add to; the event says whether the
    block raised (``ok``). ``hook`` is a plugin manager's hook relay, or None
    to emit nothing (a lane used without a plugin manager).
    """
    started = time.time()
    t0 = time.perf_counter()
    ok = False
    try:
        yield attributes
        ok = True
    finally:
        if hook is not None:
            notify(
                hook.lanewise_on_stage,
                StageTiming(
                    request_id=request_id,
                    stage=name,
                    started_at=started,
                    duration_s=time.perf_counter() - t0,
                    ok=ok,
                    attributes=attributes,
                ),
            )
