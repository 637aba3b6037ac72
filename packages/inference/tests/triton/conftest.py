"""Real ``tritonserver`` (the one nvidia-pytriton ships) on ``deploy/triton/cpu``.

One server per test session (starting one takes seconds); tests that kill a
server start their own. Each server writes the toy LM's per-request outcomes to
an events file, the server-side evidence the cancellation tests read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lanewise.inference.triton.server import TritonServer, default_cpu_repository

TOKEN_DELAY_MS = "5"


class Events:
    """The toy LM's record of finished requests (one JSON object per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def wait_for(self, request_prefix: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The event of the request whose id starts with ``request_prefix``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.all():
                if event["request_id"].startswith(request_prefix):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no server-side event for {request_prefix!r} in {self.all()}")


def start_server(workdir: Path, **env: str) -> TritonServer:
    server = TritonServer(
        default_cpu_repository(),
        workdir=workdir,
        env={
            "LANEWISE_TRITON_EVENTS": str(workdir / "events.jsonl"),
            "LANEWISE_TRITON_TOKEN_DELAY_MS": TOKEN_DELAY_MS,
            **env,
        },
    )
    return server.start()


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    server = start_server(tmp_path_factory.mktemp("triton"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def triton_events(triton_server: TritonServer) -> Events:
    return Events(triton_server.workdir / "events.jsonl")


@pytest.fixture
def triton_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], TritonServer]]:
    """Start extra servers for one test (stopped after it)."""
    started: list[TritonServer] = []

    def make() -> TritonServer:
        server = start_server(tmp_path_factory.mktemp("triton-replica"))
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
