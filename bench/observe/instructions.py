"""Instructions per request that the observe lane adds to the gateway, counted by callgrind.

``python -m bench.observe.instructions [--requests 100] [--repeats 3] [--variants ...]
[--before REF] [--annotate N]``

CPU time per request swings with a shared machine's load; the number of instructions
a request executes does not. Each variant is the gateway's ASGI app (inference lane,
``openai`` backend over aiohttp to the canned upstream of :mod:`bench.upstream`, which
runs outside valgrind); all of them are built in one process under ``valgrind
--tool=callgrind``, driven alternately by a raw ASGI loop (no HTTP server: the same
client work on every side), with a dump after each side's requests via callgrind's
client requests (a 5-line C helper compiled here with ``cc``). Counted: user-space
instructions of every thread of the gateway process; not the kernel's, not the
upstream's and not the telemetry sidecar's: the link starts the sidecar as a child
process and valgrind does not follow children, so the child runs natively and drains
the pipe outside the counted process.

Variants (the lane as ``lanewise serve`` runs it: the telemetry sidecar, every sink on,
every request traced and its ``traceparent`` forwarded upstream):

* ``off``: no observe lane.
* ``on``: the observe lane with its sidecar.
* ``notraces``: ``observe.traces = false`` (no trace ids, nothing forwarded upstream).
* ``noforward``: traced, but the ``traceparent`` is not handed to the backend.
* ``nolink``: traced, but records are not encoded for the sidecar (``SidecarLink.send``
  a no-op): the observer's own work on the event loop.
* ``discard``: as ``on``, but the sidecar is ``cat > /dev/null`` (on request only:
  with ``--native`` it tells the hand-over from the sidecar's work on core 1).

``on - nolink`` is the hand-over (encoding, buffering, the flush timer), ``on -
noforward`` forwarding the trace upstream, ``on - notraces`` all of tracing.
Under callgrind a request runs ~100x slower: the link's flush runs every
``--flush-every`` requests (135: natively, 2700 requests/s and a flush each 50 ms)
instead of on its timer, and the lane's other timers (lane-state collection, the
log writer's wake-up) are stretched by ``--dilation`` (100), so that they run about
as often per request as natively whatever the machine's load. ``--requests`` (270)
is best a multiple of ``--flush-every``. ``--concurrency C`` (1) runs C requests at
a time, as under load: their objects are alive together, and the garbage collector's
young generation fills with them (at 1 it hardly ever runs); both counts must then be
multiples of C (e.g. 15). Each side also reports the wall time the garbage collector
took per request (``gc.callbacks``; under valgrind in its slowed-down time).

``--before REF`` runs the same variants on REF's source tree (another callgrind run),
``--annotate N`` ranks the N C functions whose instructions per request differ most
between ``off`` and each variant (``callgrind_annotate``; self cost, or inclusive with
``--inclusive``: Python functions all run inside the interpreter's eval loop, so the
ranking shows C work — encoding, allocation, garbage collection, dict lookups).
Needs ``valgrind`` with its headers and ``cc``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.callgrind import build_helper
from bench.direct_app import asgi_io, start_lifespan
from bench.observe.overhead import GATEWAY_CORE, LOAD_CORE, free_port, process, tree_env

VARIANTS = ("off", "on", "notraces", "noforward", "nolink")
MODEL_BODY = (
    b'{"model":"m","max_tokens":32,"messages":[{"role":"user",'
    b'"content":"Why is the sky blue? Answer in one sentence."}]}'
)


def _app(variant: str, data_dir: Path, upstream: str) -> tuple[Any, Any]:
    """The variant's app and its observe plugin (None for ``off``)."""
    from lanewise.core.gateway.app import create_app
    from lanewise.core.plugins import get_plugin_manager
    from lanewise.core.settings import load_settings
    from lanewise.observe.plugin import ObservePlugin

    for key in [k for k in os.environ if k.startswith("LANEWISE_OBSERVE__")]:
        del os.environ[key]
    os.environ["LANEWISE_OBSERVE__LOG_FORMAT"] = "json"
    os.environ["LANEWISE_OBSERVE__LOG_FILE"] = str(data_dir / "gateway.log")
    os.environ["LANEWISE_OBSERVE__SIDECAR"] = "true"
    os.environ["LANEWISE_OBSERVE__SPAN_EXPORTER"] = "bench.observe.serve:DiscardExporter"
    os.environ["LANEWISE_OBSERVE__SIDECAR_CPUS"] = f"[{LOAD_CORE}]"  # as bench.observe's "on"
    if variant == "notraces":
        os.environ["LANEWISE_OBSERVE__TRACES"] = "false"
    models = {"m": {"kind": "openai", "base_url": upstream + "/v1", "model": "bench"}}
    settings = load_settings(None, models=models, data_dir=data_dir)
    if variant == "off":
        return create_app(settings, plugin_manager=get_plugin_manager(["inference"])), None
    plugin = ObservePlugin()
    pm = get_plugin_manager(["inference"], extra=[plugin])
    return create_app(settings, plugin_manager=pm), plugin


def child() -> None:
    """Runs under callgrind: every variant's app, alternating sides, a dump after each."""
    import ctypes

    import lanewise.observe.link as link
    import lanewise.observe.telemetry as telemetry_module
    from lanewise.core.gateway.app import freeze_startup_heap  # (older trees have it there too)
    from lanewise.observe import logs

    from bench.direct_app import CHAT_SCOPE
    from bench.observe.serve import split_lane

    native = "LW_CG_HELPER" not in os.environ  # --native: CPU time, no callgrind
    helper = None if native else ctypes.CDLL(os.environ["LW_CG_HELPER"])
    tmp = Path(os.environ["LW_CG_DIR"])
    requests, repeats = int(os.environ["LW_CG_REQUESTS"]), int(os.environ["LW_CG_REPEATS"])
    variants = os.environ["LW_CG_VARIANTS"].split(",")
    # Timers run on wall-clock time, requests ~100x slower: stretch them alike. The
    # link's flush runs every ``flush_every`` requests instead (its timer never fires),
    # so that a flush carries as many records whatever the machine's load.
    dilation = float(os.environ["LW_CG_DILATION"])
    flush_every = int(os.environ["LW_CG_FLUSH_EVERY"])
    concurrency = int(os.environ["LW_CG_CONCURRENCY"])
    link.INTERVAL_S = 1e6
    telemetry_module.STATE_INTERVAL_S *= dilation
    scope = dict(CHAT_SCOPE, headers=[(b"content-type", b"application/json"), (b"host", b"b")])
    receive, send, statuses = asgi_io(MODEL_BODY)

    async def run() -> dict[str, Any]:
        apps, plugins, stops = {}, {}, []
        for variant in variants:
            data_dir = tmp / variant
            data_dir.mkdir()
            apps[variant], plugins[variant] = _app(variant, data_dir, os.environ["LW_CG_UP"])
            if variant in ("nolink", "discard", "noforward"):
                split_lane(plugins[variant], variant)
            stops.append(await start_lifespan(apps[variant]))
        if logs._installed is not None:  # the gateway's log writer thread
            logs._installed[1].interval_s *= dilation
        freeze_startup_heap()  # as `lanewise serve` workers do

        async def side(variant: str, n: int) -> None:
            app, plugin = apps[variant], plugins[variant]
            sidecar = plugin.telemetry.link if plugin is not None else None
            for i in range(concurrency, n + concurrency, concurrency):
                if concurrency == 1:
                    await app(dict(scope, state={}), receive, send)
                else:  # requests in flight together, as under load (their objects too)
                    await asyncio.gather(
                        *(app(dict(scope, state={}), receive, send) for _ in range(concurrency))
                    )
                if sidecar is not None and i % flush_every == 0:
                    sidecar._tick()
                    if sidecar._timer is not None:  # re-armed: the next is ours
                        sidecar._timer.cancel()

        for variant in variants:  # warm-up: pools, first-call paths, the sidecars' start
            await side(variant, flush_every)
        await asyncio.sleep(1.0)
        if helper is not None:
            helper.cg_start()
            await asyncio.sleep(0.2)
            helper.cg_dump(b"warm")
        ticks: dict[str, list[int]] = {v: [] for v in variants}
        cpu_us: dict[str, list[float]] = {v: [] for v in variants}
        gc_us: dict[str, list[float]] = {v: [] for v in variants}
        collecting = [0.0, 0.0]  # when the running collection started; seconds in all

        def on_gc(phase: str, _: dict[str, Any]) -> None:
            if phase == "start":
                collecting[0] = time.perf_counter()
            else:
                collecting[1] += time.perf_counter() - collecting[0]

        gc.callbacks.append(on_gc)
        for _ in range(repeats):
            for variant in variants:
                telemetry = plugins[variant].telemetry if plugins[variant] else None
                before = telemetry.link._ticks if telemetry and telemetry.link else 0
                statuses.clear()
                started, collected = time.process_time(), collecting[1]
                await side(variant, requests)
                cpu_us[variant].append((time.process_time() - started) / requests * 1e6)
                gc_us[variant].append((collecting[1] - collected) / requests * 1e6)
                if helper is not None:
                    helper.cg_dump(variant.encode())
                assert statuses == [200] * requests, statuses[:3]
                if telemetry is not None and telemetry.link is not None:
                    ticks[variant].append(telemetry.link._ticks - before)
        for stop in stops:
            await stop()
        gc.callbacks.remove(on_gc)
        return {"ticks": ticks, "cpu_us": cpu_us, "gc_us": gc_us}

    print(json.dumps(asyncio.run(run())), flush=True)


def _annotate(dump: Path, inclusive: bool) -> dict[str, int]:
    """Instructions by C function of one dump: self cost summed over recursion levels
    (``f'2`` is ``f`` called from within ``f``), inclusive cost of the outermost."""
    out = subprocess.run(
        [
            "callgrind_annotate",
            f"--inclusive={'yes' if inclusive else 'no'}",
            "--threshold=100",
            str(dump),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        match = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?)(?:\s+\[.*\])?$", line)
        if match and ":" in match.group(2):
            name = match.group(2).rsplit(":", 1)[1].split("'")[0]
            count = int(match.group(1).replace(",", ""))
            before = counts.get(name, 0)
            counts[name] = max(before, count) if inclusive else before + count
    return counts


def measure(
    *,
    requests: int,
    repeats: int,
    variants: list[str],
    dilation: float,
    flush_every: int,
    concurrency: int,
    tree: Path | None,
    annotate: int,
    inclusive: bool = False,
    native: bool = False,
) -> dict[str, Any]:
    """``native``: the same child without valgrind, pinned to core 0: CPU per request."""

    with tempfile.TemporaryDirectory(prefix="lanewise-bench-cg-") as tmp_name:
        tmp = Path(tmp_name)
        helper = build_helper(tmp)
        (tmp / "metrics").mkdir()
        up = free_port()
        upstream = f"http://127.0.0.1:{up}"
        with process(["bench.upstream", "--port", str(up)], LOAD_CORE, upstream + "/v1/models"):
            env = {
                **tree_env(tree),
                "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
                "LW_CG_DIR": str(tmp),
                "LW_CG_UP": upstream,
                "LW_CG_REQUESTS": str(requests),
                "LW_CG_REPEATS": str(repeats),
                "LW_CG_VARIANTS": ",".join(variants),
                "LW_CG_DILATION": str(dilation),
                "LW_CG_FLUSH_EVERY": str(flush_every),
                "LW_CG_CONCURRENCY": str(concurrency),
            }
            if native:
                command = ["taskset", "-c", GATEWAY_CORE]
            else:
                env["LW_CG_HELPER"] = str(helper)
                command = [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={tmp}/cg.%p",
                ]
            out = subprocess.run(
                [*command, sys.executable, "-m", "bench.observe.instructions", "--child"],
                env=env,
                check=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=Path(__file__).resolve().parents[2],
            ).stdout
        extra = json.loads(out.strip().splitlines()[-1])
        per_request: dict[str, list[float]] = {v: [] for v in variants}
        dumps: dict[str, list[tuple[float, Path]]] = {v: [] for v in variants}
        for dump in tmp.glob("cg.*"):
            text = dump.read_text(errors="replace")
            side = re.search(r"^desc: Trigger: Client Request: (\w+)", text, re.M)
            total = re.search(r"^totals: (\d+)", text, re.M)
            if side and total and side.group(1) in per_request:
                count = int(total.group(1)) / requests
                per_request[side.group(1)].append(count)
                dumps[side.group(1)].append((count, dump))
        if native:
            per_request = extra["cpu_us"]
        median = {v: statistics.median(c) for v, c in per_request.items()}
        ranked: dict[str, list[tuple[str, float]]] = {}
        if annotate and "off" in variants and not native:
            # The dump nearest each variant's median stands for it.
            by_fn = {
                v: _annotate(sorted(d, key=lambda cd: abs(cd[0] - median[v]))[0][1], inclusive)
                for v, d in dumps.items()
            }
            for v in variants:
                if v == "off":
                    continue
                diff = {
                    fn: (by_fn[v].get(fn, 0) - by_fn["off"].get(fn, 0)) / requests
                    for fn in by_fn[v].keys() | by_fn["off"].keys()
                }
                top = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:annotate]
                ranked[v] = [(fn, round(d)) for fn, d in top]
    return {
        "unit": "µs CPU" if native else "instructions",
        "samples": per_request,
        "median": median,
        "ticks": extra["ticks"],
        "gc_us": {v: statistics.median(c) for v, c in extra["gc_us"].items()},
        "ranked": ranked,
    }


def report(name: str, data: dict[str, Any], requests: int, inclusive: bool) -> None:
    med = data["median"]
    off = med.get("off")
    # Instructions in thousands (k); native CPU time in µs.
    scale, unit = (1.0, " µs") if data["unit"] == "µs CPU" else (1e3, " k")
    sides = len(next(iter(data["samples"].values())))
    print(f"{name}: {data['unit']} per request (median of {sides} sides)")
    for variant, count in med.items():
        spread = ", ".join(f"{s / scale:.0f}" for s in data["samples"][variant])
        added = f"{(count - off) / scale:+8.1f}{unit} vs off" if off is not None else ""
        ticks = sum(data["ticks"].get(variant, ()))
        per_tick = f"; {requests * sides / ticks:.0f} requests/flush" if ticks else ""
        collector = data["gc_us"].get(variant)
        in_gc = f"; garbage collection {collector:.1f} µs/request" if collector is not None else ""
        print(
            f"  {variant:>10}: {count / scale:8.1f}{unit} {added} (sides: {spread}){per_tick}"
            f"{in_gc}"
        )
    pieces = {
        "hand-over (on - nolink)": ("on", "nolink"),
        "forwarding the traceparent (on - noforward)": ("on", "noforward"),
        "tracing in all (on - notraces)": ("on", "notraces"),
        "observer without hand-over (nolink - off)": ("nolink", "off"),
    }
    for label, (a, b) in pieces.items():
        if a in med and b in med:
            print(f"  {label}: {(med[a] - med[b]) / scale:+.1f}{unit}")
    for variant, top in data["ranked"].items():
        kind = "inclusive" if inclusive else "self"
        print(f"  C functions by instructions added per request, {variant} vs off ({kind}):")
        for fn, diff in top:
            print(f"    {diff:+9.0f}  {fn}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--requests", type=int, default=270)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dilation", type=float, default=100.0)
    parser.add_argument("--flush-every", type=int, default=135)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="requests in flight together (their objects meet the garbage collector)",
    )
    parser.add_argument("--before", help="a git ref: the same variants on its tree")
    parser.add_argument("--annotate", type=int, default=0)
    parser.add_argument("--inclusive", action="store_true", help="rank by inclusive counts")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--native", action="store_true", help="CPU time per request instead (no valgrind)"
    )
    args = parser.parse_args()
    if args.requests % args.concurrency or args.flush_every % args.concurrency:
        raise SystemExit("--requests and --flush-every must be multiples of --concurrency")
    if args.child:
        child()
        return
    if not args.native and (shutil.which("valgrind") is None or shutil.which("cc") is None):
        raise SystemExit("needs valgrind (with its headers) and cc")
    from bench.observe.overhead import checkout

    variants = args.variants.split(",")
    runs: dict[str, Any] = {}
    trees: dict[str, Path | None] = {"now": None}
    if args.before:
        trees[f"before ({args.before})"] = checkout(args.before)
    for name, tree in trees.items():
        runs[name] = measure(
            requests=args.requests,
            repeats=args.repeats,
            variants=variants,
            dilation=args.dilation,
            flush_every=args.flush_every,
            concurrency=args.concurrency,
            tree=tree,
            annotate=args.annotate,
            inclusive=args.inclusive,
            native=args.native,
        )
        report(name, runs[name], args.requests, args.inclusive)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
