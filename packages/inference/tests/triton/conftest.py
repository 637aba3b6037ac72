"""Real ``tritonserver`` (the one nvidia-pytriton ships) on ``deploy/triton/cpu``.

One server per test session (starting one takes seconds); tests that kill a
server start their own. Each server writes the toy LM's per-request outcomes to
an events file, the server-side evidence the cancellation tests read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from lanewise.inference.triton.server import TritonServer
from lanewise.inference.triton.testing import ToyLMEvents, events_of, start_cpu_triton

Events = ToyLMEvents


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    server = start_cpu_triton(tmp_path_factory.mktemp("triton"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def triton_events(triton_server: TritonServer) -> ToyLMEvents:
    return events_of(triton_server)


@pytest.fixture
def triton_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], TritonServer]]:
    """Start extra servers for one test (stopped after it)."""
    started: list[TritonServer] = []

    def make() -> TritonServer:
        server = start_cpu_triton(tmp_path_factory.mktemp("triton-replica"))
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
