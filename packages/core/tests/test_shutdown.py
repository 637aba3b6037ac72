"""Graceful shutdown: a stop request lets in-flight requests finish (real uvicorn)."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn
from lanewise.core.gateway.app import create_app
from lanewise.core.server import free_port


def test_in_flight_stream_completes_after_shutdown_starts(lanewise_settings, core_pm, echo_plugin):
    settings = lanewise_settings(models={"echo": {"kind": "echo", "delay_s": 0.1}})
    app = create_app(settings, plugin_manager=core_pm(echo_plugin))
    backend = app.state["components"].backends()["echo"]
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.01)

    lines: list[str] = []
    body = {
        "model": "echo",
        "stream": True,
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
    }
    with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            lines.append(line)
            if '"content":"one"' in line:
                server.should_exit = True  # SIGTERM does exactly this in uvicorn
    thread.join(timeout=30)

    assert not thread.is_alive()
    assert [line for line in lines if line][-1] == "data: [DONE]"
    text = "".join(
        line.split('"content":"')[1].split('"')[0] for line in lines if '"content":"' in line
    )
    assert text == "one two three four five six seven eight"
    assert backend.closed  # the lifespan closed the container's components after draining
    [usage] = echo_plugin.usage
    assert usage.usage.completion_tokens == 8
    # New connections are refused once the server has stopped.
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        raise AssertionError("the server still accepts connections")
    except httpx.ConnectError:
        pass
