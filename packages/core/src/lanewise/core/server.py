"""Run the gateway in a background thread on a free port (demo, tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from lanewise.core.http_limits import HttpLimits, LimitedHttpProtocol, protocol_with
from litestar import Litestar


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def uvicorn_limits(gateway: Any, *, in_process: bool = False) -> dict[str, Any]:
    """uvicorn options that apply ``gateway``'s protocol limits (``lanewise serve`` and tests).

    Worker processes read the limits from the settings themselves (the class is
    imported by name there); an in-process server gets a class that carries them.
    """
    limits = HttpLimits.from_settings(gateway)
    return {
        "http": protocol_with(limits) if in_process else LimitedHttpProtocol,
        "timeout_keep_alive": limits.keepalive_timeout_s,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
    }


@contextmanager
def serve_in_thread(app: Litestar, *, port: int | None = None) -> Iterator[str]:
    """Yield the base URL of ``app`` served by uvicorn; stop it gracefully on exit."""
    port = port or free_port()
    settings = app.state.get("settings")
    limits = uvicorn_limits(settings.gateway, in_process=True) if settings is not None else {}
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **limits
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="lanewise-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start; see the log above")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
