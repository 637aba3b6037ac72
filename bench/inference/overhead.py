"""Added latency of the lanewise gateway vs calling the backend directly.

Two pairs, each measured in the same run, c=1 and c=64, p50 and p99:

* ``openai``: an httpx client calling an upstream OpenAI-compatible server
  directly (a lanewise gateway process serving the extractive model) vs the
  same client calling a second gateway process whose model is the ``openai``
  backend pointed at that upstream. Added = through - direct. Non-streaming
  and streaming (TTFT) requests.
* ``extractive``: the extractive model called in-process vs through a gateway
  process over HTTP (added = HTTP + routing + pipeline + serialisation).

Targets (issue 3): added p50 <= 1 ms and p99 <= 3 ms at c=1 for the proxy pair;
at c=64 the added p50 should stay below 1x the direct p50 (the gateway must not
double the latency under load). Servers and the load generator share the
machine's cores, so absolute numbers are pessimistic; ratios are what count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

MESSAGES = [
    {
        "role": "system",
        "content": (
            "The interactive pool is warm and never scales to zero. The batch pool runs on "
            "spot capacity. Requests that fail before their first token are retried once on "
            "another replica. A client disconnect cancels the upstream generation at once."
        ),
    },
    {"role": "user", "content": "What happens when a client disconnects?"},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gateway_process(models: dict[str, Any]) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.inference.serve",
            "--port",
            str(port),
            "--models",
            json.dumps(models),
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("benchmark gateway did not start")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3, "n": len(ordered)}


async def run_load(
    call: Callable[[], Awaitable[float]], *, concurrency: int, total: int
) -> list[float]:
    samples: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            samples.append(await call())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


def http_call(
    client: httpx.AsyncClient, base: str, model: str, *, stream: bool
) -> Callable[[], Awaitable[float]]:
    body = {"model": model, "messages": MESSAGES, "max_tokens": 64, "stream": stream}

    async def call() -> float:
        t0 = time.perf_counter()
        if not stream:
            r = await client.post(f"{base}/v1/chat/completions", json=body)
            r.raise_for_status()
            return time.perf_counter() - t0
        async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            ttft = None
            async for line in r.aiter_lines():
                if ttft is None and '"content":"' in line and '"content":""' not in line:
                    ttft = time.perf_counter() - t0
            return ttft if ttft is not None else time.perf_counter() - t0

    return call


async def measure_pair(
    direct: Callable[[], Awaitable[float]],
    through: Callable[[], Awaitable[float]],
    *,
    concurrency: int,
    total: int,
) -> dict[str, Any]:
    # Warm both paths (connection pools, first-request imports), then interleave
    # rounds so drift on a shared machine hits both sides alike.
    await run_load(direct, concurrency=concurrency, total=concurrency * 2)
    await run_load(through, concurrency=concurrency, total=concurrency * 2)
    d: list[float] = []
    t: list[float] = []
    rounds = 4
    for _ in range(rounds):
        d += await run_load(direct, concurrency=concurrency, total=total // rounds)
        t += await run_load(through, concurrency=concurrency, total=total // rounds)
    dp, tp = percentiles(d), percentiles(t)
    return {
        "concurrency": concurrency,
        "direct": dp,
        "gateway": tp,
        "added_p50_ms": tp["p50_ms"] - dp["p50_ms"],
        "added_p99_ms": tp["p99_ms"] - dp["p99_ms"],
        "ratio_p50": tp["p50_ms"] / dp["p50_ms"],
        "ratio_p99": tp["p99_ms"] / dp["p99_ms"],
    }


async def bench_openai(upstream: str, front: str, *, quick: bool) -> list[dict[str, Any]]:
    out = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for stream in (False, True):
            for c, total in ((1, 200 if quick else 600), (64, 640 if quick else 2560)):
                result = await measure_pair(
                    http_call(client, upstream, "extractive", stream=stream),
                    http_call(client, front, "proxied", stream=stream),
                    concurrency=c,
                    total=total,
                )
                result["pair"] = "openai-stream-ttft" if stream else "openai"
                out.append(result)
                print(_line(result), flush=True)
    return out


async def bench_extractive(front: str, *, quick: bool) -> list[dict[str, Any]]:
    from lanewise.core.types import ChatRequest, Message, SamplingParams
    from lanewise.inference.extractive import ExtractiveBackend

    backend = ExtractiveBackend(scorer="lexical")
    request = ChatRequest(
        model="extractive",
        messages=[Message(role=m["role"], content=m["content"]) for m in MESSAGES],  # type: ignore[arg-type]
        sampling=SamplingParams(max_tokens=64),
    )

    async def direct() -> float:
        t0 = time.perf_counter()
        await backend.generate(request)
        return time.perf_counter() - t0

    out = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for c, total in ((1, 200 if quick else 600), (64, 640 if quick else 2560)):
            result = await measure_pair(
                direct,
                http_call(client, front, "extractive", stream=False),
                concurrency=c,
                total=total,
            )
            result["pair"] = "extractive-in-process"
            out.append(result)
            print(_line(result), flush=True)
    return out


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['pair']:>24} c={r['concurrency']:<3} direct p50={r['direct']['p50_ms']:.2f}ms "
        f"p99={r['direct']['p99_ms']:.2f}ms | gateway p50={r['gateway']['p50_ms']:.2f}ms "
        f"p99={r['gateway']['p99_ms']:.2f}ms | added p50={r['added_p50_ms']:+.2f}ms "
        f"p99={r['added_p99_ms']:+.2f}ms (x{r['ratio_p50']:.2f} / x{r['ratio_p99']:.2f})"
    )


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    results: list[dict[str, Any]] = []
    # Lexical scoring keeps the model's own cost small and steady, so the
    # difference measured is the gateway's, not embedding noise.
    extractive = {"kind": "extractive", "scorer": "lexical"}
    with gateway_process({"extractive": extractive}) as upstream:
        proxied = {
            "proxied": {"kind": "openai", "base_url": f"{upstream}/v1", "model": "extractive"},
            "extractive": extractive,
        }
        with gateway_process(proxied) as front:
            results += asyncio.run(bench_openai(upstream, front, quick=quick))
            results += asyncio.run(bench_extractive(front, quick=quick))
    return results
