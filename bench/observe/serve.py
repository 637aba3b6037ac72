"""One gateway process for the observe benchmark, telemetry on or off.

``python -m bench.observe.serve --port 8123 --upstream http://127.0.0.1:9001/v1 --telemetry on``

Every variant loads the same lanes (inference only: the requests use no
retrieval); "on" adds the observe lane with JSON logs to a file, metrics, the
SQLite usage table and traces (every request sampled) to an exporter that
discards them (a local collector that costs nothing). ``--sidecar`` processes
all of that in the telemetry sidecar (as ``lanewise serve`` does), on the cores
``--sidecar-cpus`` names (default: the gateway's); without it, in the gateway's
own telemetry thread.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import uvicorn

# From the app module, which older trees (``--before REF``) have too.
from lanewise.core.gateway.app import create_app, freeze_startup_heap
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.settings import load_settings
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class DiscardExporter(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def split_lane(plugin: Any, split: str) -> None:
    """Switch one piece of the observe lane off, for profiling: ``nolink`` (records are
    made but the sidecar is sent nothing: the observer's own work), ``discard`` (a sidecar
    that reads the records and throws them away: the hand-over without the sidecar's
    work; before the app's lifespan starts it) or ``noforward`` (traced, but no
    ``traceparent`` handed to the backend)."""
    telemetry = plugin.telemetry if plugin is not None else None
    if telemetry is None:
        raise SystemExit(f"{split} needs the observe lane on")
    if split == "noforward":
        from lanewise.core.context import TRACEPARENT

        started = telemetry.request_started

        def no_forward(context: Any, scope: Any) -> None:
            started(context, scope)
            context.attributes.pop(TRACEPARENT, None)

        telemetry.request_started = no_forward
        return
    if telemetry.link is None:
        raise SystemExit(f"{split} needs the sidecar (--sidecar)")
    if split == "nolink":
        telemetry.link.send = lambda kind, message: None
    elif split == "discard":
        telemetry.link.command = ["sh", "-c", "exec cat > /dev/null"]
    else:
        raise ValueError(f"unknown split {split!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--telemetry", choices=("on", "off"), required=True)
    parser.add_argument("--log-file", default=None)
    parser.add_argument("--no-traces", action="store_true", help="(profiling one sink)")
    parser.add_argument(
        "--no-link", action="store_true", help="(profiling) the sidecar is sent nothing"
    )
    parser.add_argument(
        "--sidecar-discard",
        action="store_true",
        help="(profiling) the sidecar reads the records and throws them away",
    )
    parser.add_argument("--sidecar", action="store_true")
    parser.add_argument("--sidecar-cpus", default=None, help="e.g. 1 or 1,2")
    parser.add_argument("--sidecar-nice", default=None, help="observe.sidecar_nice")
    args = parser.parse_args()
    if args.sidecar and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # As `lanewise serve` sets one: the sidecar counts in files /metrics reads.
        raise SystemExit("--sidecar needs PROMETHEUS_MULTIPROC_DIR (set before Python starts)")
    data_dir = tempfile.mkdtemp(prefix="lanewise-observe-bench-")
    models = {"m": {"kind": "openai", "base_url": args.upstream, "model": "bench"}}
    # Before the settings load: the [observe] section reads them.
    os.environ["LANEWISE_OBSERVE__LOG_FORMAT"] = "json"
    os.environ["LANEWISE_OBSERVE__LOG_FILE"] = args.log_file or f"{data_dir}/gateway.log"
    if args.no_traces:
        os.environ["LANEWISE_OBSERVE__TRACES"] = "false"
    if args.sidecar:
        os.environ["LANEWISE_OBSERVE__SIDECAR"] = "true"
        # The child cannot be handed an object: it imports the same discarding exporter.
        os.environ["LANEWISE_OBSERVE__SPAN_EXPORTER"] = "bench.observe.serve:DiscardExporter"
        if args.sidecar_cpus:
            cpus = [int(c) for c in args.sidecar_cpus.split(",")]
            os.environ["LANEWISE_OBSERVE__SIDECAR_CPUS"] = json.dumps(cpus)
        if args.sidecar_nice is not None:
            os.environ["LANEWISE_OBSERVE__SIDECAR_NICE"] = args.sidecar_nice
    settings = load_settings(None, models=models, data_dir=data_dir)
    if args.telemetry == "on":
        from lanewise.observe.plugin import ObservePlugin

        exporter = None if args.sidecar else DiscardExporter()
        plugin = ObservePlugin(span_exporter=exporter)
        pm = get_plugin_manager(["inference"], extra=[plugin])
    else:
        plugin = None
        pm = get_plugin_manager(["inference"])
    app = create_app(settings, plugin_manager=pm)
    for flag, split in ((args.no_link, "nolink"), (args.sidecar_discard, "discard")):
        if flag:
            split_lane(plugin, split)
    freeze_startup_heap()  # as `lanewise serve` workers do (create_app_from_env)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
