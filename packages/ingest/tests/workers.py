"""Real ``lanewise worker`` processes for the Celery tests (no mocks: Celery, Redis, PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LANEWISE = str(Path(sys.executable).parent / "lanewise")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def peak_rss_kib(pid: int) -> int:
    """The process's high-water RSS (VmHWM), in KiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


@dataclass
class Worker:
    config: Path
    log: Path
    name: str
    concurrency: int = 2
    queues: str = "ingest,embed"
    process: subprocess.Popen[bytes] | None = None
    peaks: dict[int, int] = field(default_factory=dict)

    def start(self, timeout: float = 60) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LANEWISE_")}
        env["OMP_NUM_THREADS"] = "1"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    LANEWISE,
                    "--config",
                    str(self.config),
                    "worker",
                    "--queues",
                    self.queues,
                    "--concurrency",
                    str(self.concurrency),
                    "--hostname",
                    f"{self.name}@%h",
                    "--loglevel",
                    "INFO",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.process.returncode}:\n{self.output()}"
                )
            if f"{self.name}@" in self.output() and " ready." in self.output():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pool_pids(self) -> list[int]:
        return children(self.process.pid) if self.process else []

    def sample(self) -> None:
        for pid in self.pool_pids():
            self.peaks[pid] = max(self.peaks.get(pid, 0), peak_rss_kib(pid))

    def kill_pool(self) -> list[int]:
        """SIGKILL every pool child (the tasks they run die with them)."""
        pids = self.pool_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and children."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
