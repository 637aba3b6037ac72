"""Gateway cost per request, before vs after a change, measured side by side in one run.

Issue 7 (spine v2) asked to keep the in-process cost per request (~185 µs) or
lower and to quote the HTTP overhead before and after. Each variant is a source
tree (``--before`` is a git ref, checked out into a temporary directory; "after"
is this checkout) run in its own child interpreter with that tree first on
``PYTHONPATH``, so both use the same installed dependencies:

* in process: a raw ASGI loop calls ``POST /v1/chat/completions`` (non-streaming,
  one user message, an instant backend: no upstream) and reports CPU µs per request
  (``time.process_time``);
* over HTTP: the same app under uvicorn pinned to CPU 1 (``taskset``), a sequential
  keep-alive client pinned to CPU 0; reports p50 latency and the server's CPU µs
  per request read from ``/proc/<pid>/stat``.

Variants alternate (before, after, before, after, ...) and the median of the
rounds is reported, so drift on a shared machine hits both. Both children import
every installed lane first, as a deployed gateway does (the heap size changes
garbage-collection cost). "after, frozen" is the served form: ``lanewise serve``
workers freeze their start-up heap (``gc.freeze``). Target: after <= before in
process.

``python -m bench.inference.spine_overhead --before efe6206`` writes
``bench/results/spine_overhead.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.direct_app import CHAT_BODY, CHAT_SCOPE, asgi_io, instant_plugin

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


# -- the child: imports lanewise from whatever tree is first on PYTHONPATH -------------
def _app() -> Any:
    from lanewise.core.gateway.app import create_app
    from lanewise.core.plugins import get_plugin_manager
    from lanewise.core.settings import load_settings

    # Import every installed lane in both trees (a deployed gateway has them loaded):
    # the heap they add changes garbage-collection cost, which must not differ by tree.
    get_plugin_manager(None)
    pm = get_plugin_manager([], extra=[instant_plugin()])
    settings = load_settings(None, data_dir=tempfile.mkdtemp(prefix="lanewise-bench-"))
    return create_app(settings, plugin_manager=pm)


async def _in_process(n: int, freeze: bool = False) -> float:
    app = _app()
    if freeze:  # what a served worker does after start-up (create_app_from_env)
        from lanewise.core.gateway.app import freeze_startup_heap  # (older trees have it there too)

        freeze_startup_heap()
    scope = CHAT_SCOPE
    receive, send, statuses = asgi_io(CHAT_BODY)

    for _ in range(300):  # warm-up
        await app(dict(scope, state={}), receive, send)
    statuses.clear()
    t0 = time.process_time()
    for _ in range(n):
        await app(dict(scope, state={}), receive, send)
    cpu = time.process_time() - t0
    assert statuses == [200] * n, statuses[:3]
    return cpu / n * 1e6


def child(mode: str, n: int, port: int) -> None:
    if mode in ("inprocess", "inprocess-frozen"):
        print(json.dumps({"cpu_us": asyncio.run(_in_process(n, mode.endswith("frozen")))}))
        return
    import uvicorn

    uvicorn.run(_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the parent ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tree: Path) -> dict[str, str]:
    # lanewise from ``tree``; ``bench`` (the child runs as a script) from this checkout.
    srcs = [str(p) for p in sorted((tree / "packages").glob("*/src"))]
    path = os.pathsep.join([*srcs, str(ROOT)])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def measure_in_process(tree: Path, n: int, mode: str = "inprocess") -> float:
    out = subprocess.run(
        ["taskset", "-c", "1", sys.executable, __file__, "--child", mode, "-n", str(n)],
        env=_env(tree),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu_us"])


def measure_http(tree: Path, n: int) -> dict[str, float]:
    import httpx

    port = _free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, __file__, "--child", "http", "--port", str(port)],
        env=_env(tree),
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            end = time.monotonic() + 60
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    if time.monotonic() > end:
                        raise
                    time.sleep(0.1)
            headers = {"content-type": "application/json"}
            for _ in range(300):
                client.post("/v1/chat/completions", content=CHAT_BODY, headers=headers)
            ticks0 = _cpu_ticks(proc.pid)
            latencies = []
            for _ in range(n):
                t0 = time.perf_counter()
                r = client.post("/v1/chat/completions", content=CHAT_BODY, headers=headers)
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
            ticks = _cpu_ticks(proc.pid) - ticks0
        hz = os.sysconf("SC_CLK_TCK")
        return {
            "p50_ms": statistics.median(latencies) * 1e3,
            "server_cpu_us": ticks / hz / n * 1e6,
        }
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="efe6206", help="git ref of the 'before' tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--child", choices=["inprocess", "inprocess-frozen", "http"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.port)
        return
    os.sched_setaffinity(0, {0})  # the client and this driver stay off the server's core
    with tempfile.TemporaryDirectory(prefix="lanewise-before-") as tmp:
        before = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        trees = {"before": before, "after": ROOT}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for r in range(args.rounds):
            for name, tree in trees.items():
                row = {"inprocess_cpu_us": measure_in_process(tree, args.n)}
                if name == "after":  # the served form: start-up heap frozen
                    row["inprocess_frozen_cpu_us"] = measure_in_process(
                        tree, args.n, "inprocess-frozen"
                    )
                row.update({f"http_{k}": v for k, v in measure_http(tree, args.n // 3).items()})
                runs[name].append(row)
                print(f"round {r + 1} {name}: {row}", flush=True)
    summary = {
        name: {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        for name, rows in runs.items()
    }
    summary["after/before"] = {
        k: summary["after"][k] / summary["before"][k] for k in summary["before"]
    }
    summary["after/before"]["inprocess_frozen_cpu_us"] = (
        summary["after"]["inprocess_frozen_cpu_us"] / summary["before"]["inprocess_cpu_us"]
    )
    result = {"before_ref": args.before, "rounds": runs, "median": summary}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "spine_overhead.json").write_text(json.dumps(result, indent=2))
    _plot(summary)
    print(json.dumps(summary, indent=2))


def _plot(summary: dict[str, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["inprocess_cpu_us", "http_server_cpu_us", "http_p50_ms"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key in zip(axes, keys, strict=True):
        labels, values = ["before", "after"], [summary["before"][key], summary["after"][key]]
        if key == "inprocess_cpu_us":
            labels.append("after, frozen")
            values.append(summary["after"]["inprocess_frozen_cpu_us"])
        ax.bar(labels, values, color=["#999", "#2a7", "#185"][: len(values)])
        ax.set_title(key)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.1f}", ha="center", va="bottom")
    fig.suptitle("gateway cost per request: before vs after spine v2 (one run)")
    fig.tight_layout()
    fig.savefig(RESULTS / "spine_overhead.png", dpi=110)


if __name__ == "__main__":
    main()
