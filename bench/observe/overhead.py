"""Gateway throughput, p50 latency and CPU per request with the observe lane on vs off.

Targets (issue 11): telemetry on costs at most 7 % of the gateway's requests per
second and at most +0.3 ms p50, with JSON summary lines to a file, Prometheus
metrics, the SQLite usage table and OpenTelemetry spans (every request sampled, to a
discarding exporter) all on. ``--before REF`` adds a gateway with REF's observe
lane (its source tree first on ``PYTHONPATH``) run as ``on`` (its sidecar on core 1:
REF must have the sidecar), measured in the same rounds.

Variants: ``off`` (no observe lane); ``on``, the telemetry sidecar (as ``lanewise
serve`` runs it) on core 1; ``on-samecore``, the sidecar left on the gateway's core
0 (the whole telemetry cost on one core); ``thread``, the telemetry processed by a
thread inside the gateway process (no sidecar). On request only (``--variants``),
splits of ``on``: ``on-notraces`` (``observe.traces = false``), ``on-nolink``
(records are made but not sent to the sidecar: the observer's own work) and
``on-discard`` (records sent to a sidecar that throws them away: the hand-over
without the sidecar's work on core 1). The
sidecar's CPU per request (its process's utime + stime, read from /proc after each
run has drained) is reported next to the gateway's: the target is the gateway's
throughput, and the sidecar's CPU is what it costs elsewhere.

Rig: each gateway process pinned to core 0 with ``taskset``; the
load generator (``wrk``, one thread, Lua-scripted POST) and the aiohttp
upstream share core 1; the upstream is measured alone first and must serve at
least 5x the gateway's RPS, so the figure is the gateway's, not the rig's.
Throughput is closed-loop at 16 connections, in short rounds (9 of 4 s; each round
runs every variant once, in alternating order); the loss is the median over rounds of
each round's own ratio, so that the machine's drift between rounds (a neighbour on a
shared host; runs minutes apart differ by several points here) cancels out instead of
landing on one variant; the spread of the rounds' ratios is reported with it. Latency is
p50 at one connection (no queueing), in two rounds after the throughput ones.
CPU ms per request come from the gateway process's utime + stime in /proc over each
run (its threads included: the telemetry worker, log writer, usage writer and span
exporter run on the same core). When the gateway
did not keep its core busy (≥ 90 %) during the throughput runs — the load
generator or a shared machine was the bottleneck — the RPS loss is taken from
the CPU figures (capacity = 1 / CPU per request) instead of the measured RPS,
and the JSON says so (``gateway_saturated``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

GATEWAY_CORE = "0"
LOAD_CORE = "1"
BODY = (
    '{"model":"m","max_tokens":32,"messages":[{"role":"user",'
    '"content":"Why is the sky blue? Answer in one sentence."}]}'
)
TARGET_RPS_LOSS = 0.07
TARGET_P50_ADDED_MS = 0.3
CLK_TCK = os.sysconf("SC_CLK_TCK")
SIDECAR_SETTLE_S = 0.3
ROUNDS = 9
"""Throughput rounds; each round runs every variant once, in alternating order."""
SECONDS = 4
LATENCY_ROUNDS = 2
"""p50 at one connection barely moves between runs: fewer rounds, after the throughput ones."""
VARIANTS = (
    "off",
    "on",
    "on-samecore",
    "thread",
    "on-notraces",
    "on-nolink",
    "on-discard",
    "on-nice0",
)
DEFAULT_VARIANTS = VARIANTS[:4]
"""The others split ``on``: traces off; the sidecar sent nothing; the sidecar discards."""


def round_losses(rounds: list[dict[str, Any]], variant: str, key: str) -> list[float]:
    """``variant``'s loss against ``off`` in each round, from that round's own runs.

    ``key`` ``rps``: 1 - rps ratio; ``cpu_ms_per_request``: 1 - the inverse CPU ratio
    (a CPU-bound gateway's capacity is 1 / CPU per request).
    """
    losses = []
    for entry in rounds:
        on, off = entry[variant]["throughput"][key], entry["off"]["throughput"][key]
        losses.append(1 - on / off if key == "rps" else 1 - off / on)
    return losses


def paired_loss(rounds: list[dict[str, Any]], variant: str, key: str) -> float:
    """The median over rounds of :func:`round_losses`."""
    return statistics.median(round_losses(rounds, variant, key))


def tree_env(tree: Path | None) -> dict[str, str]:
    """A child's environment: lanewise imported from ``tree`` (None: this checkout)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in sorted(tree.glob("packages/*/src")))
    return env


def checkout(ref: str) -> Path:
    """``ref``'s source tree in a temporary directory (``git archive``)."""
    root = Path(__file__).resolve().parents[2]
    tree = Path(tempfile.mkdtemp(prefix="lanewise-bench-before-"))
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", ref], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], method: str = "GET") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if method == "GET":
                httpx.get(url, timeout=1)
            else:
                httpx.post(url, content=BODY, headers={"content-type": "application/json"})
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


@contextmanager
def process(
    args: list[str], core: str, ready: str, method: str = "GET", env: dict[str, str] | None = None
) -> Iterator[int]:
    proc = subprocess.Popen(
        ["taskset", "-c", core, sys.executable, "-m", *args],
        env=env or {**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        wait_ready(ready, proc, method)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_seconds(pid: int) -> float:
    """CPU of ``pid``'s live child processes (the telemetry sidecar)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def wrk(url: str, *, connections: int, seconds: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CORE,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    assert p50 is not None
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p50.group(2)]
    return {"rps": rps, "requests": requests, "p50_ms": float(p50.group(1)) * scale}


def measure(
    pid: int, url: str, script: Path, *, connections: int, seconds: int
) -> dict[str, float]:
    before, children_before = cpu_seconds(pid), children_cpu_seconds(pid)
    result = wrk(url, connections=connections, seconds=seconds, script=script)
    used = cpu_seconds(pid) - before
    time.sleep(SIDECAR_SETTLE_S)  # what the sidecar still had queued belongs to this run
    children = children_cpu_seconds(pid) - children_before
    result["cpu_ms_per_request"] = used * 1e3 / max(result["requests"], 1)
    result["sidecar_cpu_ms_per_request"] = children * 1e3 / max(result["requests"], 1)
    # Share of its core the process used: below ~0.9 the process was not the bottleneck
    # (the load generator or the machine was), and its RPS says little about it.
    result["core_busy"] = used / seconds
    return result


def telemetry_counts(url: str) -> dict[str, float]:
    """Requests the lane counted and telemetry it dropped, by sink (completeness check)."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            if sample.name == "lanewise_requests_total":
                counts["requests"] = counts.get("requests", 0.0) + sample.value
            elif sample.name == "lanewise_telemetry_dropped_total":
                key = f"dropped_{sample.labels['sink']}"
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def run(
    *, quick: bool = False, before: Path | None = None, chosen: tuple[str, ...] = VARIANTS
) -> dict[str, Any]:
    """``before``: a source tree whose observe lane runs as another gateway (``before``)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    seconds = 3 if quick else SECONDS
    rounds = 2 if quick else ROUNDS
    work = Path(tempfile.mkdtemp(prefix="lanewise-observe-bench-"))
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{BODY}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    ports = {variant: free_port() for variant in (*VARIANTS, "before")}
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    path = "/v1/chat/completions"
    results: dict[str, Any] = {"rounds": [], "rig": {}}
    with process(
        ["bench.upstream", "--port", str(up_port)], LOAD_CORE, upstream + path, "POST"
    ) as up_pid:
        # The upstream alone (its own core shared with wrk: a pessimistic figure for it).
        results["rig"]["upstream"] = measure(
            up_pid, upstream + path, script, connections=16, seconds=seconds
        )
        on = ["bench.observe.serve", "--telemetry", "on"]
        gateways = {
            "off": ["bench.observe.serve", "--telemetry", "off"],
            "on": [*on, "--sidecar", "--sidecar-cpus", LOAD_CORE],
            "on-samecore": [*on, "--sidecar"],
            "thread": on,
            "on-notraces": [*on, "--sidecar", "--sidecar-cpus", LOAD_CORE, "--no-traces"],
            "on-nolink": [*on, "--sidecar", "--sidecar-cpus", LOAD_CORE, "--no-link"],
            "on-discard": [*on, "--sidecar", "--sidecar-cpus", LOAD_CORE, "--sidecar-discard"],
            "on-nice0": [*on, "--sidecar", "--sidecar-cpus", LOAD_CORE, "--sidecar-nice", "0"],
            "before": [*on, "--sidecar", "--sidecar-cpus", LOAD_CORE],  # as "on"
        }
        variants = [v for v in VARIANTS if v in chosen]
        if before is not None:
            variants.append("before")
        metrics_dirs = {v: work / f"metrics-{v}" for v in variants if "--sidecar" in gateways[v]}
        for directory in metrics_dirs.values():
            directory.mkdir()
        envs = {
            variant: {
                **tree_env(before if variant == "before" else None),
                **(
                    {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dirs[variant])}
                    if variant in metrics_dirs
                    else {}
                ),
            }
            for variant in variants
        }
        logs = {v: ["--log-file", str(work / f"{v}.log")] for v in variants if v != "off"}
        with ExitStack() as stack:
            pids = {
                variant: stack.enter_context(
                    process(
                        [
                            *gateways[variant],
                            *logs.get(variant, []),
                            "--port",
                            str(ports[variant]),
                            "--upstream",
                            upstream + "/v1",
                        ],
                        GATEWAY_CORE,
                        f"http://127.0.0.1:{ports[variant]}/healthz",
                        env=envs[variant],
                    )
                )
                for variant in variants
            }
            for variant in variants:  # warm-up: imports, pools, first-call paths
                wrk(
                    f"http://127.0.0.1:{ports[variant]}{path}",
                    connections=4,
                    seconds=2,
                    script=script,
                )
            for index in range(rounds):
                entry: dict[str, Any] = {}
                # Alternate the order: drift within a round hits each variant both ways.
                for variant in variants if index % 2 == 0 else variants[::-1]:
                    url = f"http://127.0.0.1:{ports[variant]}{path}"
                    through = measure(pids[variant], url, script, connections=16, seconds=seconds)
                    entry[variant] = {"throughput": through}
                    print(
                        f"  {variant:>11}: {through['rps']:8.0f} rps "
                        f"({through['cpu_ms_per_request']:.3f} CPU ms/req"
                        f" + sidecar {through['sidecar_cpu_ms_per_request']:.3f}, "
                        f"core {through['core_busy'] * 100:.0f}% busy)",
                        flush=True,
                    )
                results["rounds"].append(entry)
            for index in range(min(LATENCY_ROUNDS, rounds)):
                for variant in variants:
                    url = f"http://127.0.0.1:{ports[variant]}{path}"
                    latency = measure(pids[variant], url, script, connections=1, seconds=seconds)
                    results["rounds"][index][variant]["latency"] = latency
                    print(f"  {variant:>11}: p50 at c=1 {latency['p50_ms']:.3f} ms", flush=True)
            time.sleep(1.5)  # the sidecars fold their last metric batch (once a second)
            results["telemetry_counts"] = {
                v: telemetry_counts(f"http://127.0.0.1:{ports[v]}/metrics")
                for v in variants
                if v != "off"
            }
        summary_lines = {
            v: sum(1 for _ in (work / f"{v}.log").open())
            for v in variants
            if (work / f"{v}.log").exists()
        }
    med = {
        variant: {
            "rps": statistics.median(r[variant]["throughput"]["rps"] for r in results["rounds"]),
            "cpu_ms_per_request": statistics.median(
                r[variant]["throughput"]["cpu_ms_per_request"] for r in results["rounds"]
            ),
            "sidecar_cpu_ms_per_request": statistics.median(
                r[variant]["throughput"]["sidecar_cpu_ms_per_request"] for r in results["rounds"]
            ),
            "p50_ms_c1": statistics.median(
                r[variant]["latency"]["p50_ms"]
                for r in results["rounds"]
                if "latency" in r[variant]
            ),
            "p50_ms_c16": statistics.median(
                r[variant]["throughput"]["p50_ms"] for r in results["rounds"]
            ),
        }
        for variant in variants
    }
    # Each round's own ratio (its runs seconds apart), then their median: the machine's
    # drift between rounds cancels out, which separate medians per variant do not do.
    measured_loss = paired_loss(results["rounds"], "on", "rps")
    # A CPU-bound gateway's throughput is 1 / CPU per request: the capacity loss follows
    # from the CPU figures even when the gateway was not saturated in the run.
    capacity_loss = paired_loss(results["rounds"], "on", "cpu_ms_per_request")
    # The gateways compared; a sidecar sharing core 0 takes part of it by design.
    busy = min(r[v]["throughput"]["core_busy"] for r in results["rounds"] for v in ("off", "on"))
    saturated = busy >= 0.9
    loss = measured_loss if saturated else capacity_loss
    added = med["on"]["p50_ms_c1"] - med["off"]["p50_ms_c1"]
    results.update(
        median=med,
        rps_loss=loss,
        rps_loss_measured=measured_loss,
        rps_loss_from_cpu=capacity_loss,
        gateway_saturated=saturated,
        gateway_core_busy_min=busy,
        p50_added_ms=added,
        cpu_us_added_per_request=(
            med["on"]["cpu_ms_per_request"] - med["off"]["cpu_ms_per_request"]
        )
        * 1e3,
        upstream_over_gateway=results["rig"]["upstream"]["rps"] / med["off"]["rps"],
        variants=variants,
        rps_loss_measured_by_variant={
            v: paired_loss(results["rounds"], v, "rps") for v in variants if v != "off"
        },
        rps_loss_measured_rounds=round_losses(results["rounds"], "on", "rps"),
        sidecar_core={"on": LOAD_CORE, "on-samecore": GATEWAY_CORE},
        log_lines_written=summary_lines,
        targets={"rps_loss_max": TARGET_RPS_LOSS, "p50_added_ms_max": TARGET_P50_ADDED_MS},
        rps_target_met=loss <= TARGET_RPS_LOSS,
        p50_target_met=added <= TARGET_P50_ADDED_MS,
    )
    shutil.rmtree(work, ignore_errors=True)
    return results
