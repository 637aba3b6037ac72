"""stdlib, uvicorn and lanewise loggers all leave through the same structlog processors."""

from __future__ import annotations

import logging

import httpx
import structlog
from lanewise.observe.logs import configure_logging, shutdown_logging, wants_console
from lanewise.observe.settings import ObserveSettings


def test_logs_inside_a_request_carry_its_context(observed_gateway, read_logs):
    with observed_gateway() as (base, _plugin):
        body = {
            "model": "scripted",
            "messages": [{"role": "user", "content": "tokens=2 log=hello"}],
        }
        r = httpx.post(
            f"{base}/v1/chat/completions", json=body, headers={"x-request-id": "ctx-1"}, timeout=30
        )
        assert r.status_code == 200
        logging.getLogger("uvicorn.error").warning("uvicorn says %s", "hi")
    lines = read_logs()
    note = next(line for line in lines if line.get("logger") == "scripted.backend")
    assert note["event"] == "backend note hello"
    assert note["request_id"] == "ctx-1"
    assert note["tenant"] == "default"
    assert note["level"] == "warning"
    assert "timestamp" in note
    assert "pid" in note
    uvicorn_line = next(line for line in lines if line.get("logger") == "uvicorn.error")
    assert uvicorn_line["event"] == "uvicorn says hi"
    assert "request_id" not in uvicorn_line
    summary = next(line for line in lines if line["event"] == "request.summary")
    # No prompt or completion text in the log lines.
    assert not any("tokens=2" in str(v) or "w0" in str(v) for line in lines for v in line.values())
    assert summary["tokens_out"] == 2


def test_console_renderer_for_development(tmp_path):
    log_file = tmp_path / "dev.log"
    settings = ObserveSettings(log_format="console", log_file=log_file)
    assert wants_console(settings)
    assert not wants_console(ObserveSettings(log_file=log_file))  # auto: a file is not a TTY
    configure_logging(settings, on_drop=lambda: None)
    try:
        structlog.get_logger("lanewise.test").info("hello.console", answer=42)
        logging.getLogger("plain.stdlib").warning("plain %d", 7)
    finally:
        shutdown_logging()
    text = log_file.read_text()
    assert "hello.console" in text
    assert "answer=42" in text
    assert "plain 7" in text
    assert not text.lstrip().startswith("{")


def test_a_celery_pool_child_flushes_its_log_lines_as_it_exits(tmp_path):
    """A prefork child leaves through ``os._exit`` (no atexit): the buffered lines must be
    written when ``worker_process_shutdown`` fires, not up to a writer interval later."""
    from celery import Celery, signals
    from lanewise.observe import celery as observe_celery

    log_file = tmp_path / "child.log"
    settings = ObserveSettings(log_format="json", log_file=log_file)
    before = observe_celery._settings
    observe_celery.instrument_celery(Celery("flush-test", set_as_current=False), settings)
    configure_logging(settings, on_drop=lambda: None)
    try:
        logger = logging.getLogger("celery.app.trace")
        for n in range(50):
            logger.info("Task t[%d] succeeded in 0.001s: None", n)
        signals.worker_process_shutdown.send(sender=None, pid=0, exitcode=0)
        # Read at once: the writer thread wakes only every 50 ms.
        lines = log_file.read_text().splitlines()
    finally:
        shutdown_logging()
        observe_celery._settings = before
    assert len([line for line in lines if "succeeded in" in line]) == 50
