"""Added latency of governance: the same gateway with and without it, in one run.

Governance on = an ``lw_`` key resolved from the ledger (cached), a route/model
scope check, a key RPM+TPM rate limit and a tenant token budget reserved in
Redis before the call (one Lua script), settled after it (batched). Governance
off = the same gateway with ``[governance] enabled = false`` and a static
``[[gateway.api_keys]]`` key (core's SHA-256 check). Both front the same aiohttp upstream.

Rig (2 cores): each gateway pinned to core 0, the upstream, Redis and this load
generator to core 1; rounds interleave on/off so drift hits both. Reported: p50 /
p99 at c=1 and c=16, CPU ms per request of the gateway process, Redis commands per
request (EVALSHA calls: an upper bound of round trips, since a settlement batch
of several scripts is one pipelined round trip).

Target (issue 10): added p50 ≤ +0.5 ms at c=1; ≤ 2 Redis round trips per request.
c=1 is measured ``repeats`` times (3 by default) on the same pair of gateways; the
summary gives the median and the spread (min, max) of the repetitions and the load
average before and after, since the machine may be shared.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis

MESSAGES = [{"role": "user", "content": "Where does the batch pool run? Answer briefly."}]
STATIC_KEY = "bench-static-key"
LANEWISE = str(Path(sys.executable).parent / "lanewise")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if (os.cpu_count() or 1) > 1 else []


@contextmanager
def process(
    cmd: list[str], *, env: dict[str, str], url: str, core: int
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([*_pin(core), *cmd], env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} did not start")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_config(tmp: Path, upstream: str, redis_url: str, governed: bool) -> Path:
    static = hashlib.sha256(STATIC_KEY.encode()).hexdigest()
    text = f"""
data_dir = "{tmp / ("on" if governed else "off")}"
redis_url = "{redis_url}"

[models.mock]
kind = "openai"
base_url = "{upstream}/v1"
model = "mock"

[[gateway.api_keys]]
sha256 = "{static}"
tenant = "acme"
"""
    if not governed:
        text += "\n[governance]\nenabled = false\n"
    if governed:
        text += """
[governance]
store = "redis"

[[governance.budgets]]
scope = "tenant"
window = "day"
limit = 1_000_000_000

[[governance.rate_limits]]
scope = "key"
rpm = 10_000_000
tpm = 1_000_000_000

[governance.prices.mock]
input_per_million = 0.15
output_per_million = 0.60
tokenizer = "auto"
"""
    path = tmp / ("on.toml" if governed else "off.toml")
    path.write_text(text)
    return path


def create_key(config: Path) -> str:
    out = subprocess.run(
        [
            LANEWISE,
            "--config",
            str(config),
            "keys",
            "create",
            "--tenant",
            "acme",
            "--model",
            "mock",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def percentiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(sorted(samples), n=100, method="inclusive")
    return {"p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3, "n": len(samples)}


async def load(
    client: httpx.AsyncClient, url: str, key: str, *, concurrency: int, total: int
) -> list[float]:
    body = {"model": "mock", "messages": MESSAGES, "max_tokens": 32}
    headers = {"authorization": f"Bearer {key}"}
    samples: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            r = await client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            r.raise_for_status()
            samples.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


def redis_commands(client: redis.Redis) -> int:
    """Scripts run (EVALSHA/EVAL): the gateway sends nothing else per request, and Redis
    counts the commands a script calls as commands too, so those are left out."""
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    return sum(int(stats.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha", "cmdstat_eval"))


def run(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    from lanewise.core.testing.services import RedisServer

    with tempfile.TemporaryDirectory(prefix="lanewise-bench-gov-") as tmp_name:
        tmp = Path(tmp_name)
        redis_server = RedisServer(tmp / "redis").start()
        subprocess.run(
            ["taskset", "-pc", "1", str(redis_server.process.pid)], check=False, capture_output=True
        )  # type: ignore[union-attr]
        try:
            result = _run(tmp, redis_server.url, quick=quick, repeats=repeats)
            os.sched_setaffinity(0, {0})  # as a gateway would run: its own core
            result["in_process"] = in_process(redis_server.url, calls=500 if quick else 2000)
            print(
                "in process (admit + settle, Redis): added p50={added_p50_ms:.3f}ms "
                "p99={added_p99_ms:.3f}ms, cpu/call {cpu_ms_per_call:.3f}ms".format(
                    **result["in_process"]
                ),
                flush=True,
            )
            return result
        finally:
            redis_server.stop()


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread (min, max) of each figure over the repetitions of one setting."""
    out: dict[str, Any] = {"repeats": len(rows)}
    for name in (
        "added_p50_ms",
        "added_p99_ms",
        "cpu_ms_per_request_off",
        "cpu_ms_per_request_on",
        "redis_scripts_per_request",
    ):
        values = [r[name] for r in rows]
        out[name] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
    for side in ("off", "on"):
        out[f"{side}_p50_ms"] = statistics.median(r[side]["p50_ms"] for r in rows)
    return out


def _run(tmp: Path, redis_url: str, *, quick: bool, repeats: int) -> dict[str, Any]:
    up_port, off_port, on_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    off_cfg = write_config(tmp, upstream, redis_url, governed=False)
    on_cfg = write_config(tmp, upstream, redis_url, governed=True)
    lw_key = create_key(on_cfg)
    serve = [LANEWISE]
    rows: list[dict[str, Any]] = []
    counter = redis.Redis.from_url(redis_url)
    with (
        process(
            [sys.executable, "-m", "bench.upstream", "--port", str(up_port)],
            env={},
            url=f"{upstream}/v1/models",
            core=1,
        ),
        process(
            [*serve, "--config", str(off_cfg), "serve", "--port", str(off_port)],
            env={},
            url=f"http://127.0.0.1:{off_port}/healthz",
            core=0,
        ) as off,
        process(
            [*serve, "--config", str(on_cfg), "serve", "--port", str(on_port)],
            env={},
            url=f"http://127.0.0.1:{on_port}/healthz",
            core=0,
        ) as on,
    ):
        os.sched_setaffinity(0, {1} if (os.cpu_count() or 1) > 1 else {0})

        async def measure() -> None:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                off_url, on_url = f"http://127.0.0.1:{off_port}", f"http://127.0.0.1:{on_port}"
                plan = [(1, 300 if quick else 1200)] * repeats + [(16, 800 if quick else 3200)]
                for c, total in plan:
                    await load(client, off_url, STATIC_KEY, concurrency=c, total=c * 4)
                    await load(client, on_url, lw_key, concurrency=c, total=c * 4)
                    samples: dict[str, list[float]] = {"off": [], "on": []}
                    cpu = {"off": 0.0, "on": 0.0}
                    commands = 0
                    rounds = 20
                    sides = [("off", off_url, STATIC_KEY, off), ("on", on_url, lw_key, on)]
                    for round_ in range(rounds):
                        # Short rounds in alternating order: drift on a shared machine
                        # lands on both sides alike.
                        for name, url, key, proc in sides if round_ % 2 else sides[::-1]:
                            before_cpu = cpu_s(proc.pid)
                            before_cmd = redis_commands(counter)
                            samples[name] += await load(
                                client, url, key, concurrency=c, total=total // rounds
                            )
                            await asyncio.sleep(0.1)  # let the settlement batch land
                            cpu[name] += cpu_s(proc.pid) - before_cpu
                            if name == "on":
                                commands += redis_commands(counter) - before_cmd
                    off_p, on_p = percentiles(samples["off"]), percentiles(samples["on"])
                    row = {
                        "concurrency": c,
                        "off": off_p,
                        "on": on_p,
                        "added_p50_ms": on_p["p50_ms"] - off_p["p50_ms"],
                        "added_p99_ms": on_p["p99_ms"] - off_p["p99_ms"],
                        "cpu_ms_per_request_off": cpu["off"] * 1e3 / len(samples["off"]),
                        "cpu_ms_per_request_on": cpu["on"] * 1e3 / len(samples["on"]),
                        "redis_scripts_per_request": commands / len(samples["on"]),
                    }
                    rows.append(row)
                    print(
                        f"c={c:<3} off p50={off_p['p50_ms']:.2f}ms p99={off_p['p99_ms']:.2f}ms | "
                        f"on p50={on_p['p50_ms']:.2f}ms p99={on_p['p99_ms']:.2f}ms | "
                        f"added p50={row['added_p50_ms']:+.2f}ms | cpu/req "
                        f"{row['cpu_ms_per_request_off']:.2f} → "
                        f"{row['cpu_ms_per_request_on']:.2f} ms | "
                        f"redis scripts/req {row['redis_scripts_per_request']:.2f}",
                        flush=True,
                    )

        load_before = os.getloadavg()
        asyncio.run(measure())
        load_after = os.getloadavg()
    counter.close()
    c1 = summary([r for r in rows if r["concurrency"] == 1])
    print(
        "c=1 over {repeats} runs: added p50 median {m:+.2f} ms (min {lo:+.2f}, max {hi:+.2f}); "
        "cpu/req median {off:.2f} → {on:.2f} ms; load average {lb} → {la}".format(
            repeats=c1["repeats"],
            m=c1["added_p50_ms"]["median"],
            lo=c1["added_p50_ms"]["min"],
            hi=c1["added_p50_ms"]["max"],
            off=c1["cpu_ms_per_request_off"]["median"],
            on=c1["cpu_ms_per_request_on"]["median"],
            lb=" ".join(f"{x:.2f}" for x in load_before),
            la=" ".join(f"{x:.2f}" for x in load_after),
        ),
        flush=True,
    )
    return {
        "latency": rows,
        "c1_summary": c1,
        "load_average": {"before": list(load_before), "after": list(load_after)},
    }


def in_process(redis_url: str, *, calls: int = 2000) -> dict[str, Any]:
    """What a request waits on (admit + queueing the settlement) without HTTP around it,
    and the CPU per call including the background settlement (ledger write + Redis)."""
    from lanewise.core.types import Message, Principal, Usage
    from lanewise.governance.governor import CallInfo
    from lanewise.governance.runtime import build
    from lanewise.governance.settings import GovernanceSettings

    settings = GovernanceSettings.model_validate(
        {
            "store": "redis",
            "budgets": [{"scope": "tenant", "window": "day", "limit": 10**12}],
            "rate_limits": [{"scope": "key", "rpm": 10**8, "tpm": 10**10}],
            "prices": {"m": {"tokenizer": "auto", "input_per_million": 0.15}},
        }
    )
    principal = Principal(tenant="acme", key_id="k1")
    messages = tuple(Message(role="user", content=m["content"]) for m in MESSAGES)  # type: ignore[arg-type]

    async def measure() -> dict[str, Any]:
        governance = build(settings, data_dir=Path(tempfile.mkdtemp()), redis_url=redis_url)
        governor = governance.governor
        waits: list[float] = []
        for warm in (True, False):
            cpu0 = time.process_time()
            for i in range(200 if warm else calls):
                call = CallInfo(
                    operation="chat",
                    model="m",
                    principal=principal,
                    request_id=f"r{i}",
                    messages=messages,
                    max_tokens=32,
                )
                t0 = time.perf_counter()
                meter = await governor.admit(call)
                t1 = time.perf_counter()
                await asyncio.sleep(0)  # the upstream call
                t2 = time.perf_counter()
                await meter.settle("ok", Usage(prompt_tokens=12, completion_tokens=7), 0.001)
                t3 = time.perf_counter()
                if not warm:
                    waits.append((t1 - t0) + (t3 - t2))
            await governor.accounting.flush()
            cpu = time.process_time() - cpu0
        await governance.aclose()
        return {
            "calls": calls,
            "added_p50_ms": percentiles(waits)["p50_ms"],
            "added_p99_ms": percentiles(waits)["p99_ms"],
            "cpu_ms_per_call": cpu * 1e3 / calls,
        }

    return asyncio.run(measure())


if __name__ == "__main__":
    # Latency only: ``python -m bench.governance.latency [--quick] [--repeats N]``.
    n = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
    run(quick="--quick" in sys.argv, repeats=n)
