"""The gateway's end of the sidecar pipe against a real child that does not keep up."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from pathlib import Path

import lanewise.observe.link as link_module
import pytest
from lanewise.core.types import Principal, Usage, UsageEvent
from lanewise.observe.link import GIVE_WAY_NICE, SidecarLink, autogroup_nice
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
        assert link.proc is not None
        # Its wake-ups (a write to its pipe) do not preempt what runs on its core.
        assert os.sched_getscheduler(link.proc.pid) == os.SCHED_BATCH
    finally:
        link.close(timeout=1.0)


def group_nice(pid: int) -> int:
    nice = autogroup_nice(Path(f"/proc/{pid}/autogroup"))
    assert nice is not None
    return nice


needs_autogroup = pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists(), reason="the kernel has no autogroup scheduling"
)


class RateLimitedGroup:
    """A child's real autogroup file, whose every other write fails as the kernel fails an
    unprivileged writer's within 100 ms of any other (EAGAIN): run as root, a test would
    never see the kernel refuse one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writes = 0

    def read_text(self) -> str:
        return self.path.read_text()

    def write_text(self, text: str) -> None:
        self.writes += 1
        if self.writes % 2:
            raise BlockingIOError(errno.EAGAIN, "write could not complete without blocking")
        self.path.write_text(text)


@needs_autogroup
@pytest.mark.parametrize(
    ("own_group", "gateway_nice", "rate_limited"),
    [
        ("/autogroup-7 nice 3\n", 3, False),  # the gateway's session has a group: its nice
        ("", os.getpriority(os.PRIO_PROCESS, 0), False),  # the root group: its own nice
        ("/autogroup-7 nice 3\n", 3, True),
    ],
    ids=[
        "gateway-in-its-session-group",
        "gateway-in-the-root-group",
        "kernel-refusing-every-other-write",
    ],
)
def test_the_child_gives_way_while_it_keeps_up_and_competes_while_it_is_behind(
    own_group: str,
    gateway_nice: int,
    rate_limited: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """The child leads its own session (its own autogroup): its group's nice is what makes
    it yield a shared core. 19 while the pipe takes everything; what the gateway competes
    with + ``nice`` once it falls behind; 19 again when it has caught up. The gateway's
    ``/proc/self/autogroup`` is a file written here, so that both cases run on any host
    (a session started by setsid has a group; the root group's file is empty). A write
    the kernel refuses for now is made again at a later tick, pacing goes on."""
    own = tmp_path / "autogroup"
    own.write_text(own_group)
    monkeypatch.setattr(link_module, "OWN_AUTOGROUP", own)
    groups: list[RateLimitedGroup] = []
    if rate_limited:

        def rate_limited_file(pid: int) -> RateLimitedGroup:
            groups.append(RateLimitedGroup(Path(f"/proc/{pid}/autogroup")))
            return groups[-1]

        monkeypatch.setattr(link_module, "autogroup_file", rate_limited_file)
    link = SidecarLink(b"{}", capacity=8 << 20, on_drop=lambda n: None, command=["cat"], nice=5)
    expected_behind = min(19, gateway_nice + 5)

    async def wait_for(pid: int, value: int) -> None:
        for _ in range(500):  # 10 s at most (the kernel's file: nothing to wait on)
            if group_nice(pid) == value:
                return
            await asyncio.sleep(0.02)

    async def run() -> list[int]:
        link.start()
        assert link.proc is not None
        pid = link.proc.pid
        # Refused at the start, the group keeps the nice it was born with for now.
        seen = [group_nice(pid)] if rate_limited else []
        link.send(USAGE, EVENT)
        await asyncio.sleep(0.2)  # ticks with a reader that keeps up
        # (Waits: unprivileged, a write may also be refused for real, and made again.)
        await wait_for(pid, GIVE_WAY_NICE)
        seen.append(group_nice(pid))
        os.kill(pid, signal.SIGSTOP)  # the child stops reading: the pipe fills
        try:
            for _ in range(8_000):  # ~2.4 MiB: more than the pipe holds
                link.send(USAGE, EVENT)
            await wait_for(pid, expected_behind)
            seen.append(group_nice(pid))
        finally:
            os.kill(pid, signal.SIGCONT)
        await wait_for(pid, GIVE_WAY_NICE)
        seen.append(group_nice(pid))
        link.stop_timer()
        return seen

    try:
        seen = asyncio.run(run())
    finally:
        link.close(timeout=5.0)
    assert seen == [0] * rate_limited + [GIVE_WAY_NICE, expected_behind, GIVE_WAY_NICE]
    if rate_limited:  # three values, each refused at least once before it was set
        [group] = groups
        assert group.writes >= 6


@needs_autogroup
def test_a_sidecar_at_the_gateways_priority_is_not_paced():
    """``nice = 0`` (``observe.sidecar_nice: 0``): the child keeps the gateway's priority, and
    its session's new group keeps the nice it starts with (0)."""
    link = SidecarLink(b"{}", capacity=1 << 20, on_drop=lambda n: None, command=["cat"])

    async def run() -> tuple[int, int]:
        link.start()
        assert link.proc is not None
        await asyncio.sleep(0.2)
        link.stop_timer()
        pid = link.proc.pid
        return os.getpriority(os.PRIO_PROCESS, pid), group_nice(pid)

    try:
        niceness, group = asyncio.run(run())
        assert link.proc is not None
        policy = os.sched_getscheduler(link.proc.pid)
    finally:
        link.close(timeout=5.0)
    assert niceness == os.getpriority(os.PRIO_PROCESS, 0)
    assert group == 0
    assert policy == os.sched_getscheduler(0)
