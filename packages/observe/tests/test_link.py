"""The gateway's end of the sidecar pipe against a real child that does not keep up."""

from __future__ import annotations

import asyncio
import os
import time

from lanewise.core.types import Principal, Usage, UsageEvent
from lanewise.observe.link import SidecarLink
from lanewise.observe.wire import USAGE, StandaloneUsage

EVENT = StandaloneUsage(
    event=UsageEvent(
        request_id="r" * 32,
        principal=Principal(tenant="acme", user="alice"),
        model="m" * 200,  # ~300 bytes a message
        operation="chat",
        usage=Usage(prompt_tokens=1, completion_tokens=2),
    ),
    at=1.0,
)


def test_a_child_that_never_reads_costs_drops_not_waits():
    """The pipe fills, then the buffer; past its capacity each message is dropped and
    counted. Nothing blocks the loop, and shutdown gives up at its deadline."""
    dropped: list[int] = []
    link = SidecarLink(b"{}", capacity=512 << 10, on_drop=dropped.append, command=["sleep", "60"])
    sent = 20_000  # ~6 MiB: more than the pipe (1 MiB at most) and the buffer hold

    async def run() -> float:
        link.start()
        slowest = 0.0
        for i in range(sent):
            started = time.perf_counter()
            link.send(USAGE, EVENT)
            slowest = max(slowest, time.perf_counter() - started)
            if i % 500 == 0:
                await asyncio.sleep(0.06)  # let the flush timer run
        link.stop_timer()
        return slowest

    slowest = asyncio.run(run())
    assert slowest < 0.05, "a send waited on the pipe"
    assert sum(dropped) > 0
    assert link.buffer.size < (512 << 10) + 1024
    started = time.monotonic()
    assert link.close(timeout=1.0) is False  # the child never drains: killed at the deadline
    assert time.monotonic() - started < 5
    # Every message is accounted for: in the pipe, or dropped and counted.
    assert sum(dropped) < sent


def test_a_child_that_exits_is_started_again():
    dropped: list[int] = []
    link = SidecarLink(b"{}", capacity=1 << 20, on_drop=dropped.append, command=["true"])

    async def run() -> None:
        link.start()
        first = link.proc
        assert first is not None
        deadline = time.monotonic() + 10
        while link.restarts == 0 and time.monotonic() < deadline:
            link.send(USAGE, EVENT)
            await asyncio.sleep(0.05)
        link.stop_timer()

    asyncio.run(run())
    assert link.restarts >= 1
    assert sum(dropped) > 0  # what was sent while no child ran
    link.close(timeout=1.0)


def test_the_child_runs_at_a_lower_priority_than_the_gateway():
    """Serving wins a shared core: the child's nice value is the gateway's plus ``nice``."""
    link = SidecarLink(
        b"{}", capacity=1 << 20, on_drop=lambda n: None, command=["sleep", "60"], nice=5
    )

    async def run() -> int:
        link.start()
        assert link.proc is not None
        niceness = os.getpriority(os.PRIO_PROCESS, link.proc.pid)
        link.stop_timer()
        return niceness

    try:
        assert asyncio.run(run()) == os.getpriority(os.PRIO_PROCESS, 0) + 5
    finally:
        link.close(timeout=1.0)
