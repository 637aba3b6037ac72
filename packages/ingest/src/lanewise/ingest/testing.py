"""Helpers for the ingest lane's tests and benchmarks: real worker processes, real servers.

``Worker`` runs ``lanewise worker`` as a child process (own session, so it can be
killed whole), ``pgvector_server`` a throwaway PostgreSQL 16 with pgvector (the
``pgserver`` wheel, a development dependency), ``write_large_text`` a large text
file written in seconds. Nothing here is a mock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LANEWISE = str(Path(sys.executable).parent / "lanewise")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def _stat(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` fields after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid``, its reaped children (pool children that were
    recycled) and its live children: a figure other jobs' load barely moves."""
    ticks = sum(int(x) for x in _stat(pid)[11:15])
    for child in children(pid):
        with contextlib.suppress(FileNotFoundError):  # exited since the listing
            ticks += sum(int(x) for x in _stat(child)[11:13])
    return ticks / os.sysconf("SC_CLK_TCK")


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
    pin_cpus: str | None = None
    peaks: dict[int, int] = field(default_factory=dict)

    def start(self, timeout: float = 60) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LANEWISE_")}
        env["OMP_NUM_THREADS"] = "1"
        with self.log.open("ab") as out:
            pin = ["taskset", "-c", self.pin_cpus] if self.pin_cpus else []
            self.process = subprocess.Popen(
                [
                    *pin,
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
        if self.process is None:
            return []
        return children(self.process.pid)  # taskset execs lanewise in place: same pid

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return cpu_seconds(self.process.pid)

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


def paragraphs(n: int = 40) -> list[str]:
    """``n`` paragraphs of 60-140 pseudo-random words (fixed seed)."""
    rng = random.Random(7)
    vocab = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 12)))
        for _ in range(2000)
    ]
    return [
        " ".join(rng.choice(vocab) for _ in range(rng.randint(60, 140))) + "." for _ in range(n)
    ]


def write_large_text(path: Path, mib: int) -> list[str]:
    """``mib`` MiB of text: 1 MiB of cycling paragraphs written ``mib`` times; its paragraphs."""
    paras = paragraphs()
    block = ""
    while len(block) < 1024 * 1024:
        block += "\n\n".join(paras) + "\n\n"
    data = block[: 1024 * 1024].rsplit("\n\n", 1)[0] + "\n\n"
    with path.open("w") as f:
        for _ in range(mib):
            f.write(data)
    return paras


@contextmanager
def pgvector_server() -> Iterator[str]:
    """A throwaway PostgreSQL 16 with pgvector (``pgserver``); yields its superuser URL."""
    pgdata = Path(tempfile.mkdtemp(prefix="lanewise-ingest-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver

        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        shutil.rmtree(pgdata, ignore_errors=True)
