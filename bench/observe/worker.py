"""Where the observe lane's CPU goes, phase by phase, without threads competing.

``python -m bench.observe.worker [--batches 30] [--size 200] [--before REF]``

:mod:`bench.observe.inproc` measures whole variants; on a shared machine its
differences of a few µs drown in noise, and it cannot say which thread spent
what. Here the lane's background threads are kept from running: a child process
(pinned to one core) sends ``size`` requests through the gateway (instant
backend, every sink on, as in ``bench.observe``), then runs each background
phase itself on the main thread (the telemetry worker's drain, the log
writer, span building and export, usage inserts, the metrics flush) and
takes the thread CPU time of each. The same loop with the lane off gives the
event loop's share. Medians over batches, in µs per request. Garbage collection
counts where it happens (mostly in the loop and the drain).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.direct_app import CHAT_BODY, CHAT_SCOPE, start_lifespan
from bench.observe.inproc import VARIANTS, _app
from bench.observe.overhead import checkout, tree_env

PHASES = ("loop", "drain", "log_write", "spans", "usage_insert", "metrics_flush")


def _hold_threads() -> None:
    """The lane's threads start but never work: this process runs their phases."""
    from lanewise.observe import logwriter, telemetry, traces
    from lanewise.observe.usage import store

    def idle(self: Any) -> None:
        return None

    telemetry.Telemetry._run = idle  # type: ignore[method-assign]
    logwriter.LineWriter._run = idle  # type: ignore[method-assign]
    traces.Tracing._run = idle  # type: ignore[method-assign]
    store.UsageWriter.__init__.__kwdefaults__["interval_s"] = 1e9


async def _measure(variant: str, batches: int, size: int) -> dict[str, float]:
    import gc

    if variant == "on":
        _hold_threads()
    app = _app(VARIANTS[variant], tempfile.mkdtemp(prefix="lanewise-observe-worker-"))
    stop = await start_lifespan(app)
    from lanewise.core.gateway.app import freeze_startup_heap  # (older trees have it there too)

    telemetry = None
    if variant == "on":
        from lanewise.observe.logs import json_line_writer
        from lanewise.observe.logwriter import take
        from lanewise.observe.telemetry import Telemetry

        telemetry = next(o for o in gc.get_objects() if isinstance(o, Telemetry))
        assert telemetry.writer is not None
        assert telemetry.tracing is not None
        telemetry.writer.ready.wait(30)
        lines = json_line_writer()
        assert lines is not None
    freeze_startup_heap()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": CHAT_BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    clock = time.thread_time
    samples: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for batch in range(batches + 1):
        t0 = clock()
        for _ in range(size):
            await app(dict(CHAT_SCOPE, state={}), receive, send)
        loop = clock() - t0
        if telemetry is None:
            phases = {"loop": loop}
        else:
            writer, tracing = telemetry.writer, telemetry.tracing
            assert writer is not None
            assert tracing is not None
            t1 = clock()
            telemetry.drain()
            t2 = clock()
            lines._drain()
            t3 = clock()
            tracing._export_pending()
            t4 = clock()
            for rows in writer._batches(take(writer.pending)):
                writer._write(rows)
            t5 = clock()
            telemetry.batch.flush()
            t6 = clock()
            phases = {
                "loop": loop,
                "drain": t2 - t1,
                "log_write": t3 - t2,
                "spans": t4 - t3,
                "usage_insert": t5 - t4,
                "metrics_flush": t6 - t5,
            }
        if batch:  # the first batch warms caches and the usage table
            for phase, seconds in phases.items():
                samples[phase].append(seconds / size * 1e6)
    await stop()
    return {phase: statistics.median(v) for phase, v in samples.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=("off", "on"))
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--core", default="0")
    parser.add_argument("--before", help="a git ref: its lane measured in the same rounds")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_measure(args.child, args.batches, args.size))))
        return
    root = Path(__file__).resolve().parents[2]
    trees: dict[str, Path | None] = {"now": None}
    if args.before:
        trees["before"] = checkout(args.before)
    runs = [("off", "now"), ("on", "now")] + [("on", "before")] * bool(args.before)
    results: dict[tuple[str, str], list[dict[str, float]]] = {run: [] for run in runs}
    print(f"load average before: {os.getloadavg()}")
    for _ in range(args.rounds):
        for variant, tree in runs:
            command = ["taskset", "-c", args.core, sys.executable, "-m", "bench.observe.worker"]
            sizes = ["--batches", str(args.batches), "--size", str(args.size)]
            out = subprocess.run(
                [*command, "--child", variant, *sizes],
                capture_output=True,
                text=True,
                check=True,
                cwd=root,
                env=tree_env(trees[tree]),
            )
            results[(variant, tree)].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"load average after: {os.getloadavg()}")
    off = statistics.median(r["loop"] for r in results[("off", "now")])
    print(f"lane off: event loop {off:.1f} µs/request (median of {args.rounds} rounds)")
    for variant, tree in runs[1:]:
        rounds = results[(variant, tree)]
        med = {phase: statistics.median(r[phase] for r in rounds) for phase in PHASES}
        background = sum(med[phase] for phase in PHASES[1:])
        parts = ", ".join(f"{phase} {med[phase]:.1f}" for phase in PHASES[1:])
        label = "lane on" if tree == "now" else f"lane on @ {args.before}"
        print(
            f"{label}: event loop {med['loop']:.1f} ({med['loop'] - off:+.1f} vs off), "
            f"background {background:.1f} µs/request ({parts}); "
            f"added in all {med['loop'] - off + background:+.1f} µs/request"
        )


if __name__ == "__main__":
    main()
