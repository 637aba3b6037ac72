"""The telemetry sidecar: one child process per gateway worker that turns its records into
summary lines, metrics, spans and usage rows (``python -m lanewise.observe.sidecar``).

The gateway writes length-prefixed messages (:mod:`lanewise.observe.wire`) to
this process's stdin; the first carries its settings. Everything after is
processed by the same :class:`~lanewise.observe.telemetry.Telemetry` a gateway
without a sidecar runs in-process, here with its own GIL and, where the host has
one, its own core. End of file (the gateway closed the pipe, or died) drains
what was read, flushes metrics, logs, usage rows and spans, and exits; so does a
parent that is gone while the pipe stays open (a forked descendant holding it).
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
from typing import Any

from lanewise.core.heap import freeze_startup_heap
from lanewise.observe.settings import ObserveSettings
from lanewise.observe.traces import EXPORT_BATCH
from lanewise.observe.wire import CONFIG, REQUEST, USAGE, FrameReader

READ_BYTES = 1 << 20
PARENT_CHECK_S = 1.0
log = logging.getLogger("lanewise.observe.sidecar")


def child_config(observe: ObserveSettings, usage_url: str | None, parent: int) -> bytes:
    """The settings message the gateway sends first (JSON: no pickles across processes)."""
    update: dict[str, Any] = {"sidecar": False, "usage_database_url": usage_url}
    settings = observe.model_copy(update=update).model_dump(mode="json")
    return json.dumps({"observe": settings, "parent": parent}).encode()


def read_config(fd: int, reader: FrameReader) -> tuple[dict[str, Any], list[tuple[int, Any]]]:
    """Block until the settings message is in; also returns any messages read with it."""
    while True:
        chunk = os.read(fd, READ_BYTES)
        if not chunk:
            raise SystemExit(0)  # the gateway went away before it said anything
        messages = reader.feed(chunk)
        if messages:
            kind, payload = messages[0]
            if kind != CONFIG:
                raise SystemExit("telemetry sidecar: the first message must be its settings")
            config: dict[str, Any] = json.loads(payload)
            return config, messages[1:]


def main() -> None:
    # Its own session (the gateway starts it so): terminal signals do not reach it.
    # SIGTERM from an operator or a supervisor: flush and leave like end of file.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from lanewise.observe.telemetry import Telemetry, count_drop

    fd = sys.stdin.fileno()
    reader = FrameReader(on_error=lambda: count_drop("internal"))
    config, early = read_config(fd, reader)
    observe = ObserveSettings(**config["observe"])
    parent = int(config["parent"])
    from lanewise.observe.logs import write_as

    telemetry = Telemetry(None, observe)
    write_as(parent)  # lines say which gateway worker served the request
    # As in a gateway worker: the imports out of the collector's sight, and no collection
    # every few hundred objects of the records a batch decodes (they die with the batch).
    freeze_startup_heap()
    try:
        process(telemetry, early)
        while True:
            ready, _, _ = select.select([fd], [], [], PARENT_CHECK_S)
            if not ready:
                if os.getppid() != parent:
                    break
                continue
            chunk = os.read(fd, READ_BYTES)
            if not chunk:
                break
            process(telemetry, reader.feed(chunk))
    finally:
        telemetry.close()  # drains, flushes metrics, usage rows and spans
        from lanewise.observe.logs import shutdown_logging

        shutdown_logging()


def process(telemetry: Any, messages: list[tuple[int, Any]]) -> None:
    """Process what was read, a span batch at a time.

    Here rather than on the threads' timers: a sidecar that falls behind reads more
    slowly, so the pipe fills and the gateway counts the drops, instead of its span
    queue overflowing while the exporter thread waits for the GIL (a backlog after a
    restart arrives as several batches at once).
    """
    for start in range(0, len(messages), EXPORT_BATCH):
        dispatch(telemetry, messages[start : start + EXPORT_BATCH])
        telemetry.drain()
        tracing = telemetry.tracing
        if tracing is not None and len(tracing.pending) >= EXPORT_BATCH:
            tracing.export_pending()


def dispatch(telemetry: Any, messages: list[tuple[int, Any]]) -> None:
    for kind, message in messages:
        if kind == REQUEST:
            telemetry._enqueue(message)
        elif kind == USAGE:
            telemetry.process_usage(message.event, message.at)
        else:
            telemetry.process_stage(message.event, message.at)


if __name__ == "__main__":
    main()
