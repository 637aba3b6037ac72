"""The observe lane's CPU per request in process, by sink: where the overhead goes.

``python -m bench.observe.inproc [--rounds 5] [--n 4000]``

Each variant runs in its own child interpreter pinned to one core: a raw ASGI
loop sends ``POST /v1/chat/completions`` to the gateway with an instant backend
(no upstream, no HTTP server), so the figure is the gateway's own CPU per
request (``time.process_time``: the writer and exporter threads included) and
the differences between variants are what each part of the lane costs. Every
child imports the observe lane (same heap) and freezes its start-up heap as a
served worker does. Variants alternate in rounds; medians are reported.

``--before REF`` adds ``bare@before`` and ``on@before``: the same variants on
the source tree of a git ref (its ``packages/*/src`` first on ``PYTHONPATH``).

Variants: ``off`` (observe not installed), ``bare`` (the middleware, record and
events, every sink off), one sink on at a time, and ``on`` (everything, as in
``bench.observe``: JSON summaries to a file, metrics, SQLite usage rows, spans
to a discarding exporter).
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

from bench.direct_app import CHAT_BODY, CHAT_SCOPE, asgi_io, instant_plugin, start_lifespan
from bench.observe.overhead import checkout, tree_env

SINKS = ("summaries", "metrics", "traces", "usage_store")
VARIANTS: dict[str, tuple[str, ...] | None] = {
    "off": None,
    "bare": (),
    "summaries": ("summaries",),
    "metrics": ("metrics",),
    "traces": ("traces",),
    "usage_store": ("usage_store",),
    "on": SINKS,
}


def _app(sinks: tuple[str, ...] | None, data_dir: str) -> Any:
    import lanewise.observe.plugin  # noqa: F401  (same heap in every variant)
    from lanewise.core.gateway.app import create_app
    from lanewise.core.plugins import get_plugin_manager
    from lanewise.core.settings import load_settings

    from bench.observe.serve import DiscardExporter

    os.environ["LANEWISE_OBSERVE__LOG_FORMAT"] = "json"
    os.environ["LANEWISE_OBSERVE__LOG_FILE"] = f"{data_dir}/gateway.log"
    for sink in SINKS:
        on = sinks is not None and sink in sinks
        os.environ[f"LANEWISE_OBSERVE__{sink.upper()}"] = "true" if on else "false"
    extra: list[Any] = [instant_plugin()]
    if sinks is not None:
        from lanewise.observe.plugin import ObservePlugin

        extra.append(ObservePlugin(span_exporter=DiscardExporter()))
    pm = get_plugin_manager([], extra=extra)
    settings = load_settings(None, data_dir=data_dir)
    return create_app(settings, plugin_manager=pm)


async def _measure(variant: str, n: int) -> dict[str, float]:
    data_dir = tempfile.mkdtemp(prefix="lanewise-observe-inproc-")
    app = _app(VARIANTS[variant], data_dir)
    stop = await start_lifespan(app)
    from lanewise.core.gateway.app import freeze_startup_heap  # (older trees have it there too)

    freeze_startup_heap()
    scope = CHAT_SCOPE
    receive, send, statuses = asgi_io(CHAT_BODY)

    for _ in range(500):  # warm-up
        await app(dict(scope, state={}), receive, send)
    await asyncio.sleep(0.3)  # let the writer threads drain the warm-up
    statuses.clear()
    t0, m0 = time.process_time(), time.thread_time()
    for _ in range(n):
        await app(dict(scope, state={}), receive, send)
    main = time.thread_time() - m0
    await asyncio.sleep(0.3)  # the threads' share of these requests (one wake-up interval)
    cpu = time.process_time() - t0
    assert statuses == [200] * n, statuses[:3]
    await stop()
    return {"cpu_us": cpu / n * 1e6, "loop_us": main / n * 1e6}


def child(variant: str, n: int) -> None:
    print(json.dumps(asyncio.run(_measure(variant, n))))


def run(
    rounds: int, n: int, core: str, variants: list[str], before: Path | None = None
) -> dict[str, Any]:
    """``variant@before`` runs ``variant`` on the ``before`` tree."""
    root = Path(__file__).resolve().parents[2]
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            name, _, at = variant.partition("@")
            command = ["taskset", "-c", core, sys.executable, "-m", "bench.observe.inproc"]
            out = subprocess.run(
                [*command, "--child", name, "--n", str(n)],
                capture_output=True,
                text=True,
                check=True,
                cwd=root,
                env=tree_env(before if at == "before" else None),
            )
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {
        v: {k: statistics.median(r[k] for r in rs) for k in ("cpu_us", "loop_us")}
        for v, rs in results.items()
    }
    return {"rounds": results, "median": med}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=list(VARIANTS))
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--core", default="0")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--before", help="a git ref: adds on@before (and bare@before)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n)
        return
    variants = args.variants.split(",")
    before = checkout(args.before) if args.before else None
    if before is not None:
        variants += [f"{v}@before" for v in ("bare", "on") if v in variants]
    print(f"load average before: {os.getloadavg()}")
    data = run(args.rounds, args.n, args.core, variants, before)
    print(f"load average after: {os.getloadavg()}")
    off = data["median"].get("off", {}).get("cpu_us")
    for variant in variants:
        med = data["median"][variant]
        spread = [round(r["cpu_us"], 1) for r in data["rounds"][variant]]
        added = f"{med['cpu_us'] - off:+7.1f}" if off is not None else ""
        print(
            f"{variant:>12}: {med['cpu_us']:7.1f} µs CPU/request ({added} vs off; "
            f"event loop {med['loop_us']:.1f} µs); rounds {spread}"
        )


if __name__ == "__main__":
    main()
