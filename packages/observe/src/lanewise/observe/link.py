"""The gateway's end of the telemetry sidecar: encode, buffer, write without ever blocking.

Finished requests are encoded at once into a buffer (:class:`FrameBuffer`); an
event-loop timer writes the buffer to the child's stdin every ``interval_s``
(sooner past ``FLUSH_BYTES``) with a non-blocking ``os.write``. What the pipe
does not take now stays for the next tick; past ``capacity`` bytes waiting, new
messages are dropped and counted (``lanewise_telemetry_dropped_total{sink="sidecar"}``),
as they are while the child is down. A dead child is started again, with a
backoff, from the same timer. Shutdown writes what is left (bounded by a
deadline), closes the pipe and waits for the child to flush its sinks.

Priority: the child runs ``nice`` below the gateway, as a batch task (``SCHED_BATCH``:
its wake-ups never preempt the task running on its core). It also leads a session of
its own, and where the kernel schedules by autogroup (one group per session,
Linux's default on many hosts) a group gets an equal share of a contended core
whatever its members' nice values; there the link sets the group's nice instead:
:data:`GIVE_WAY_NICE` while the child keeps up, so that every wake-up of a
gateway, an upstream or a load generator on its core runs first, and the
gateway's group nice (in the root group, its process nice) + ``nice`` while it is
behind (the pipe full, or a quarter of ``capacity`` waiting), so it catches up
before anything is dropped. A write the kernel refuses for now (``EAGAIN``) is made
again at the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lanewise.observe.wire import REQUEST, FrameBuffer, config_frame

log = logging.getLogger("lanewise.observe")
INTERVAL_S = 0.05
POLL_EVERY = 20
"""Ticks between checks that the child still runs (a write to a dead one fails at once)."""
FLUSH_BYTES = 32 << 10
"""Write before the timer once this much is buffered: at a busy gateway's rate (~40
records) few encodings wait in memory and each of the sidecar's bursts of work is short
(measured against 256 KiB: 1 to 2.5 points more throughput on the gateway; 8 KiB
gained no more and cost the sidecar more per record)."""
PIPE_BYTES = 1 << 20
"""Pipe capacity asked for (``F_SETPIPE_SZ``; Linux caps it at ``fs.pipe-max-size``)."""
F_SETPIPE_SZ = 1031
GIVE_WAY_NICE = 19
"""The child's autogroup nice while it keeps up (an unprivileged owner may set 0 to 19)."""
OWN_AUTOGROUP = Path("/proc/self/autogroup")
RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
STABLE_S = 30.0
"""A child that ran this long resets the restart backoff."""


class SidecarLink:
    def __init__(
        self,
        config: bytes,
        *,
        capacity: int,
        on_drop: Callable[[int], None],
        cpus: list[int] | None = None,
        nice: int = 0,
        command: list[str] | None = None,
    ) -> None:
        self.config = config
        """The child's settings (JSON), sent as its first message."""
        self.capacity = capacity
        self.on_drop = on_drop
        self.cpus = cpus
        """Cores the child may run on (set at once: its imports must not run on the gateway's)."""
        self.nice = nice
        """Added to the child's nice value: serving wins the core when both want it."""
        self.command = command or [sys.executable, "-m", "lanewise.observe.sidecar"]
        self.buffer = FrameBuffer()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        """Children started after the first (tests and operators read it)."""
        self._fd: int | None = None
        self._out: memoryview | None = None
        """The part of the last write the pipe did not take yet (finished before anything else)."""
        self._out_messages = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failures = 0
        self._started_at = 0.0
        self._restart_at: float | None = None
        self._closed = False
        self._ticks = 0
        self._group: Path | None = None
        """The child's ``/proc/PID/autogroup`` while its nice is paced there."""
        self._behind_nice = 0
        self._group_nice: int | None = None
        """The group nice last set (None: not yet; the kernel refused the write)."""

    # -- on the event loop --------------------------------------------------------------
    def start(self) -> None:
        """Start the child and the flush timer (from the running event loop)."""
        self._loop = asyncio.get_running_loop()
        with self._lock:
            self._spawn()
        self._timer = self._loop.call_later(INTERVAL_S, self._tick)

    def send(self, kind: int, message: Any) -> None:
        """Queue one message; never blocks, never raises for a full pipe or a dead child."""
        buffer = self.buffer
        with self._lock:
            if self._fd is None or buffer.size >= self.capacity:
                self.on_drop(1)
                return
            if kind == REQUEST:  # most messages
                buffer.add_record(message)
            else:
                buffer.add(kind, message)
            # A burst: write now, unless the pipe was full a moment ago (then the timer
            # retries; a write per request into a full pipe would cost the loop a syscall).
            if buffer.size >= FLUSH_BYTES and self._out is None:
                self._flush()

    def _tick(self) -> None:
        self._timer = None
        if self._closed:
            return
        try:
            with self._lock:
                self._ticks += 1
                if self.proc is None or self._ticks % POLL_EVERY == 0:
                    self._check_child()
                self._flush()
                if self._group is not None:
                    self._pace()
        except Exception:
            log.warning("telemetry sidecar link failed", exc_info=True)
        if self._loop is not None and not self._closed:
            self._timer = self._loop.call_later(INTERVAL_S, self._tick)

    # -- under the lock -------------------------------------------------------------------
    def _spawn(self) -> None:
        try:
            proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                # Its own session: a Ctrl-C meant for the server must not kill it before it
                # has drained; it leaves on end-of-file, or when its parent is gone.
                start_new_session=True,
            )
        except OSError:
            log.warning("telemetry sidecar could not start", exc_info=True)
            self._child_gone()
            return
        if self.cpus:
            try:
                os.sched_setaffinity(proc.pid, self.cpus)
            except OSError:
                log.warning("telemetry sidecar: cannot run on cores %s", self.cpus, exc_info=True)
        self._group = None
        if self.nice:
            self._lower_priority(proc.pid)
        assert proc.stdin is not None
        fd = proc.stdin.fileno()
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
        os.set_blocking(fd, False)
        self.proc, self._fd = proc, fd
        self._started_at = time.monotonic()
        self._restart_at = None
        # The pipe is empty: the settings always fit.
        self._out = memoryview(config_frame(self.config))
        self._out_messages = 0

    def _lower_priority(self, pid: int) -> None:
        value = min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.nice)
        try:
            os.setpriority(os.PRIO_PROCESS, pid, value)
        except OSError:
            log.warning("telemetry sidecar: cannot lower its priority", exc_info=True)
            return
        # A batch task's wake-up (a write to its pipe) never preempts the running task:
        # it waits for the core's next turn instead of cutting into an upstream's.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))
        group = autogroup_file(pid)
        if autogroup_nice(group) is None:  # no autogroup: the process's nice is what counts
            return
        # Behind, it competes as the gateway would with ``nice`` added: as its session's
        # group, or, where the gateway runs in the root group (an empty file: no setsid
        # started its session, as on some CI hosts), as its own tasks, by their nice.
        own = autogroup_nice(OWN_AUTOGROUP)
        if own is None:
            own = os.getpriority(os.PRIO_PROCESS, 0)
        self._behind_nice = min(19, own + self.nice)
        self._group, self._group_nice = group, None
        self._set_group_nice(GIVE_WAY_NICE)

    def _pace(self) -> None:
        """Give way while the child keeps up; compete as ``nice`` while it is behind."""
        behind = self._out is not None or self.buffer.size > self.capacity >> 2
        value = self._behind_nice if behind else GIVE_WAY_NICE
        if value != self._group_nice:
            self._set_group_nice(value)

    def _set_group_nice(self, value: int) -> None:
        if self._group is None:
            return
        try:
            self._group.write_text(f"{value}\n")
        except BlockingIOError:
            # EAGAIN: without CAP_SYS_ADMIN the kernel takes one autogroup nice per 100 ms,
            # system-wide (another gateway worker may just have set its sidecar's): the
            # next tick tries again.
            return
        except OSError:  # no autogroup scheduling, or the child is gone
            self._group = None
            return
        self._group_nice = value

    def _check_child(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self._child_gone()
        restart_at = self._restart_at
        if self.proc is None and restart_at is not None and time.monotonic() >= restart_at:
            self.restarts += 1
            self._spawn()

    def _child_gone(self) -> None:
        """Drop what waits for the child, close its pipe, schedule the next one."""
        dropped = self.buffer.take()[1] + self._out_messages
        self._out, self._out_messages = None, 0
        if dropped:
            self.on_drop(dropped)
        if self.proc is not None:
            if time.monotonic() - self._started_at >= STABLE_S:
                self._failures = 0
            with contextlib.suppress(OSError):
                self.proc.kill()
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0)
            log.warning(
                "telemetry sidecar %d is gone (exit status %s); %d records dropped",
                self.proc.pid,
                self.proc.returncode,
                dropped,
            )
        self.proc, self._fd = None, None
        delay = min(RESTART_MIN_S * 2**self._failures, RESTART_MAX_S)
        self._failures += 1
        self._restart_at = None if self._closed else time.monotonic() + delay

    def _flush(self) -> None:
        """Write what the pipe takes now; the rest waits (never a blocking write).

        The buffer becomes ``_out`` before the first byte is written, so whatever
        happens to the write, its messages are either in the pipe, still waiting, or
        counted as dropped.
        """
        while self._fd is not None:
            if self._out is None:
                if not self.buffer.messages:
                    return
                data, messages = self.buffer.take()
                self._out, self._out_messages = memoryview(data), messages
            try:
                written = os.write(self._fd, self._out)
            except BlockingIOError:
                return  # the pipe is full: the child is behind; the buffer absorbs, then drops
            except OSError:  # EPIPE: the child is gone
                self._child_gone()
                return
            if written < len(self._out):
                self._out = self._out[written:]
                return
            self._out, self._out_messages = None, 0

    # -- shutdown (any thread) ------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> bool:
        """Write what is left, close the pipe, wait for the child to flush; True when it did."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            proc, fd = self.proc, self._fd
            if proc is None or fd is None:
                return True
            left = self._drain_until(fd, deadline)
            self.proc, self._fd = None, None
        if left:
            self.on_drop(left)
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
            return proc.returncode == 0
        except subprocess.TimeoutExpired:
            log.warning("telemetry sidecar did not finish in %.0f s; killed", timeout)
            proc.kill()
            proc.wait()
            return False

    def _drain_until(self, fd: int, deadline: float) -> int:
        """Blocking-with-deadline writes of everything queued; returns messages not written."""
        buffered, count = self.buffer.take()
        data = bytes(self._out or b"") + buffered
        messages = self._out_messages + count
        self._out, self._out_messages = None, 0
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return max(messages, 1)
            try:
                _, writable, _ = select.select([], [fd], [], remaining)
                if writable:
                    view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue
            except OSError:
                return max(messages, 1)
        return 0

    def stop_timer(self) -> None:
        """No more ticks (the loop is about to stop); :meth:`close` does the last write."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def autogroup_file(pid: int) -> Path:
    """``/proc/PID/autogroup`` (a function, so that a test can stand in a kernel that refuses)."""
    return Path(f"/proc/{pid}/autogroup")


def autogroup_nice(path: Path) -> int | None:
    """The nice value in ``/proc/PID/autogroup`` (``/autogroup-N nice V``); None without one."""
    try:
        return int(path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None
