"""``with_keepalive``: a stream whose client went away is closed at once, not by the GC."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

from lanewise.core.gateway.streaming import with_keepalive


async def test_a_stream_abandoned_while_the_pump_waits_is_closed_without_a_gc() -> None:
    closed, blocked = asyncio.Event(), asyncio.Event()
    produced = 0

    async def source() -> AsyncIterator[int]:
        nonlocal produced
        try:
            while True:
                produced += 1
                if produced == 3:  # 1 taken, 2 in the one-slot queue: the pump waits on 3
                    blocked.set()
                yield produced
        finally:
            closed.set()

    gc.disable()  # a collection may close an unreachable stream too and hide the bug
    try:
        # Held here as the caller's frames hold it: only an explicit close ends it.
        stream = source()
        events = with_keepalive(stream, interval_s=60)
        assert await anext(events) == 1
        # The pump fills the one-slot queue and waits on it: the source sits at a yield.
        await asyncio.wait_for(blocked.wait(), timeout=5)
        await asyncio.sleep(0)  # let the pump reach its wait on the full queue
        await events.aclose()  # the client went away
        await asyncio.wait_for(closed.wait(), timeout=5)
    finally:
        gc.enable()
    assert closed.is_set()
