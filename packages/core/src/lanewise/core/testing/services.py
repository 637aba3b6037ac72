"""Throwaway real servers on free ports in temp dirs: never shared, killable, restartable."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanewise.core.server import free_port

POSTGRES_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class ServiceUnavailable(RuntimeError):
    """The system lacks a server binary; the message says how to install it."""


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float, what: str) -> None:
    """Block until ``proc`` accepts TCP connections on ``port``; fail fast if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not accept connections on port {port} within {timeout:g}s")


@dataclass
class RedisServer:
    """A real ``redis-server`` with its own port and directory."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server is not installed: apt-get install redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process, 10, "redis-server")
        return self

    def kill(self) -> None:
        """Kill -9: simulates a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()


def _wait_port_closed(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} still accepts connections {timeout:g}s after kill -9")


def _postgres_bin(name: str) -> str:
    for directory in POSTGRES_BIN_DIRS:
        candidate = directory / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServiceUnavailable(f"{name} is not installed: apt-get install postgresql")
    return found


def _as_postgres_user() -> dict[str, Any]:
    """Popen arguments that drop root to the ``postgres`` user (initdb refuses root).

    The server then stays our direct child (unlike under ``runuser``), so ``kill -9``
    hits the postmaster itself and ``wait()`` reaps it: no zombie keeps its pid alive
    in ``postmaster.pid``, which would block the restart.
    """
    if os.geteuid() != 0:
        return {}
    import pwd

    entry = pwd.getpwnam("postgres")
    return {
        "user": entry.pw_uid,
        "group": entry.pw_gid,
        "extra_groups": [],
        "env": {**os.environ, "HOME": entry.pw_dir, "USER": "postgres", "LOGNAME": "postgres"},
    }


def _let_postgres_traverse(directory: Path) -> None:
    """Add search (x) permission on the temp dirs above the cluster, and nothing else.

    pytest's base temp dir (``/tmp/pytest-of-root``) is 0700, so the ``postgres`` user
    could not reach a cluster below it. Only directories inside the system temp dir are
    touched (never ``/root`` or a home directory); elsewhere initdb's own error says why.
    """
    tmp_root = Path(tempfile.gettempdir()).resolve()
    current = directory.resolve()
    while current != tmp_root and tmp_root in current.parents:
        mode = current.stat().st_mode
        if mode & 0o001 == 0:
            current.chmod(mode | 0o011)
        current = current.parent


def _remove_stale_pid_file(data: Path) -> None:
    """Drop ``postmaster.pid`` when the pid it names is gone or a zombie (after kill -9)."""
    pid_file = data / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        state = "gone"
    if state in {"gone", "Z", "X"}:
        pid_file.unlink(missing_ok=True)


@dataclass
class PostgresServer:
    """A real PostgreSQL cluster made by ``initdb`` in a temp dir, served on a free port."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    user: str = "lanewise"
    database: str = "lanewise"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> PostgresServer:
        data = self.directory / "data"
        as_postgres = _as_postgres_user()
        if not data.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            if as_postgres:
                shutil.chown(self.directory, "postgres", "postgres")
                os.chmod(self.directory, 0o700)
                _let_postgres_traverse(self.directory.parent)
            initdb = subprocess.run(
                [
                    _postgres_bin("initdb"),
                    "-D",
                    str(data),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
                check=False,
                **as_postgres,
            )
            if initdb.returncode != 0:
                raise RuntimeError(f"initdb failed in {data}: {initdb.stderr.strip()}")
        _remove_stale_pid_file(data)
        self.process = subprocess.Popen(
            [
                _postgres_bin("postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.directory),
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **as_postgres,
        )
        wait_for_port(self.port, self.process, 30, "postgres")
        self._wait_accepting()
        return self

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(
                [
                    _postgres_bin("psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    "-d",
                    "postgres",
                    "-Atc",
                    f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",
                ],
                capture_output=True,
                text=True,
            )
            if result.returncode == 0:
                if result.stdout.strip() != "1":
                    subprocess.run(
                        [
                            _postgres_bin("createdb"),
                            "-h",
                            "127.0.0.1",
                            "-p",
                            str(self.port),
                            "-U",
                            self.user,
                            self.database,
                        ],
                        check=True,
                        capture_output=True,
                    )
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not accept queries: {result.stderr.strip()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """Kill -9 the postmaster (a crash); its backends exit when they notice."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            _wait_port_closed(self.port, 30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> PostgresServer:
        self.stop()
        return self.start()
