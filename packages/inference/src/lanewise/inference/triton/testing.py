"""Helpers for tests and benchmarks that need a real Triton (the bundled tritonserver).

``start_cpu_triton(workdir)`` starts ``deploy/triton/cpu`` on free ports with the toy
LM's events file in ``workdir``; ``ToyLMEvents`` reads that file, the server-side
record of how each request ended (completed, stopped, cancelled, failed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lanewise.inference.triton.server import TritonServer, default_cpu_repository


class ToyLMEvents:
    """The toy LM's record of finished requests (one JSON object per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line]

    def wait_for(self, request_prefix: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The event of the request whose Triton id starts with ``request_prefix``.

        The triton backend sends ``<ChatRequest.request_id>-<random>`` as the id.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.all():
                if str(event["request_id"]).startswith(request_prefix):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no server-side event for {request_prefix!r} in {self.all()}")


TRACE_HEADERS = "traceparent|tracestate"


def start_cpu_triton(workdir: Path, *, token_delay_ms: float = 5, **env: str) -> TritonServer:
    """Start the CPU repository on free ports; the caller stops (or kills) it."""
    server = TritonServer(
        default_cpu_repository(),
        workdir=workdir,
        env={
            "LANEWISE_TRITON_EVENTS": str(workdir / "events.jsonl"),
            "LANEWISE_TRITON_TOKEN_DELAY_MS": str(token_delay_ms),
            **env,
        },
        # The toy models record the trace context the backend sent (gRPC metadata).
        extra_args=[f"--grpc-header-forward-pattern={TRACE_HEADERS}"],
    )
    return server.start()


def events_of(server: TritonServer) -> ToyLMEvents:
    return ToyLMEvents(server.workdir / "events.jsonl")
