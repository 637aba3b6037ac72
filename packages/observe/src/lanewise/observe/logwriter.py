"""The one thread that writes log lines, from a bounded queue of rendered strings.

Lines are rendered on the caller's thread; this thread wakes every
``interval_s`` (50 ms) and writes whatever queued up in one ``write`` + ``flush``.
A full queue (a stuck or slow sink) drops the line and counts it; the caller
never waits.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

_STOP = None


class LineWriter:
    def __init__(
        self,
        path: Path | None,
        capacity: int,
        on_drop: Callable[[], None],
        interval_s: float = 0.05,
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.synchronous = False
        self._lock = threading.Lock()
        self.on_drop = on_drop
        self.queue: queue.Queue[str | None] = queue.Queue(maxsize=capacity)
        self._file: IO[str] | None = (
            open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115
        )
        self._thread = threading.Thread(target=self._run, name="lanewise-log-writer", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        if self.synchronous:
            self._write_now(line)
            return
        try:
            self.queue.put_nowait(line)
        except queue.Full:
            self.on_drop()

    def _stream(self) -> Any:
        # stderr is looked up per batch: test runners and daemons swap it.
        return self._file if self._file is not None else sys.stderr

    def _run(self) -> None:
        q = self.queue
        while True:
            # Wake on a timer, not per line: a per-line wake-up costs the event loop's
            # thread a GIL hand-off on every request.
            time.sleep(self.interval_s)
            lines: list[str | None] = []
            while True:
                try:
                    lines.append(q.get_nowait())
                except queue.Empty:
                    break
            if not lines:
                continue
            stop = _STOP in lines
            text = "".join(line + "\n" for line in lines if line is not _STOP)
            try:
                if text:
                    stream = self._stream()
                    stream.write(text)
                    stream.flush()
            except Exception:  # a broken sink: the lines are lost, counted, not retried
                for _ in range(text.count("\n")):
                    self.on_drop()
            finally:
                for _ in lines:
                    q.task_done()
            if stop:
                return

    def go_synchronous(self) -> None:
        """Write each line at once from now on: the server is stopping, and a process
        killed by its re-raised SIGTERM would lose what the thread had not written."""
        # A sink that cannot even drain the queue would block the caller: stay queued.
        self.synchronous = self.flush(timeout=2.0)

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
        while self.queue.unfinished_tasks:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self.queue.put(_STOP, timeout=timeout)
            self._thread.join(timeout)
        if self._file is not None and not self._thread.is_alive():
            self._file.close()
