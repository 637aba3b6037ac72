"""A telemetry sink outage never fails a request: items are dropped and counted."""

from __future__ import annotations

import os
import threading

import httpx
from lanewise.core.server import free_port
from lanewise.observe import metrics
from lanewise.observe.logs import shutdown_logging
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client.parser import text_string_to_metric_families

BODY = {"model": "scripted", "messages": [{"role": "user", "content": "tokens=4"}]}


def dropped(sink: str) -> float:
    text = metrics.exposition()[0].decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "lanewise_telemetry_dropped_total" and sample.labels["sink"] == sink:
                return sample.value
    return 0.0


class BrokenExporter(SpanExporter):
    """A collector that is down: every export raises."""

    def export(self, spans):
        raise ConnectionRefusedError("collector down")

    def shutdown(self) -> None:
        pass


def test_usage_database_down(observed_gateway):
    before = dropped("usage")
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/gone"
    with observed_gateway(database_url=dead) as (base, plugin):
        for _ in range(5):
            assert (
                httpx.post(f"{base}/v1/chat/completions", json=BODY, timeout=30).status_code == 200
            )
        assert plugin.telemetry.writer.flush(30)
        usage = httpx.get(f"{base}/v1/usage", timeout=30)
        assert usage.status_code == 503
        assert usage.headers["content-type"].startswith("application/problem+json")
    assert dropped("usage") - before == 5


def test_blocked_log_sink(observed_gateway, monkeypatch):
    """Nobody reads the log pipe: the writer thread blocks, the bounded queue overflows."""
    read_end, write_end = os.pipe()
    monkeypatch.setenv("LANEWISE_OBSERVE__LOG_FILE", f"/proc/self/fd/{write_end}")
    monkeypatch.setenv("LANEWISE_OBSERVE__LOG_BUFFER", "4")
    before = dropped("logs")
    drained = bytearray()
    try:
        with observed_gateway() as (base, _plugin):
            # Fill the pipe first so the writer is stuck for the rest of the test.
            os.set_blocking(write_end, False)
            try:
                while True:
                    os.write(write_end, b"x" * 65536)
            except BlockingIOError:
                pass
            os.set_blocking(write_end, True)
            for _ in range(40):
                r = httpx.post(f"{base}/v1/chat/completions", json=BODY, timeout=10)
                assert r.status_code == 200
            assert dropped("logs") - before >= 30
            # Let the writer go again so the gateway can shut down cleanly.
            reader = threading.Thread(target=lambda: _drain(read_end, drained), daemon=True)
            reader.start()
        shutdown_logging()  # the sink holds the pipe open: close it so the reader sees EOF
    finally:
        os.close(write_end)
    reader.join(10)
    os.close(read_end)
    assert b"request.summary" in drained


def _drain(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, 65536):
        into.extend(chunk)


def test_span_exporter_down(observed_gateway):
    before = dropped("traces")
    with observed_gateway(exporter=BrokenExporter()) as (base, plugin):
        for _ in range(3):
            assert (
                httpx.post(f"{base}/v1/chat/completions", json=BODY, timeout=30).status_code == 200
            )
        plugin.telemetry.tracing.flush()
    # Each request makes a server span and a generate span.
    assert dropped("traces") - before == 6
