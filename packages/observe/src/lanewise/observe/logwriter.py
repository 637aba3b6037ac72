"""The one thread that writes log lines, from a bounded buffer of rendered strings.

Lines are rendered on the caller's thread and appended to a deque (no lock, no
condition variable: ~40 ns); this thread wakes every ``interval_s`` (50 ms) and
writes whatever gathered in one ``write`` + ``flush``. A full buffer (a stuck or
slow sink) drops the line and counts it; the caller never waits.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")


class LineWriter:
    def __init__(
        self,
        path: Path | None,
        capacity: int,
        on_drop: Callable[[], None],
        interval_s: float = 0.05,
    ) -> None:
        self.path = path
        self.capacity = capacity
        self.interval_s = interval_s
        self.synchronous = False
        self._lock = threading.Lock()
        self.on_drop = on_drop
        self.pending: deque[str] = deque()
        self._writing = False
        self._stop = threading.Event()
        self._file: IO[str] | None = (
            open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115
        )
        self._thread = threading.Thread(target=self._run, name="lanewise-log-writer", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        if self.synchronous:
            self._write_now(line)
        elif len(self.pending) < self.capacity:
            self.pending.append(line)  # deque.append is atomic: callers on any thread
        else:
            self.on_drop()

    def _stream(self) -> Any:
        # stderr is looked up per batch: test runners and daemons swap it.
        return self._file if self._file is not None else sys.stderr

    def _run(self) -> None:
        # Wake on a timer, not per line: a per-line wake-up costs the event loop's
        # thread a GIL hand-off on every request.
        while not self._stop.wait(self.interval_s):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        pending = self.pending
        if not pending:
            return
        self._writing = True  # before taking lines: flush() must not see an empty gap
        try:
            lines = take(pending)
            text = "\n".join(lines) + "\n"
            try:
                with self._lock:
                    stream = self._stream()
                    stream.write(text)
                    stream.flush()
            except Exception:  # a broken sink: the lines are lost, counted, not retried
                for _ in lines:
                    self.on_drop()
        finally:
            self._writing = False

    def go_synchronous(self) -> None:
        """Write each line at once from now on: the server is stopping, and a process
        killed by its re-raised SIGTERM would lose what the thread had not written."""
        # A sink that cannot even drain the buffer would block the caller: stay buffered.
        self.synchronous = self.flush(timeout=2.0)
        if self.synchronous:
            self._drain()  # a line that slipped in while switching

    def _write_now(self, line: str) -> None:
        try:
            with self._lock:
                stream = self._stream()
                stream.write(line + "\n")
                stream.flush()
        except Exception:
            self.on_drop()

    def flush(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.pending or self._writing:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._file is not None and not self._thread.is_alive():
            self._file.close()


def take(pending: deque[T]) -> list[T]:
    """What is in ``pending`` now, taken from the left (another thread may append meanwhile,
    or take too: ``popleft`` is atomic)."""
    items: list[T] = []
    for _ in range(len(pending)):
        try:
            items.append(pending.popleft())
        except IndexError:
            break
    return items
