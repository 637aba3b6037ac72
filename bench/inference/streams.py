"""Concurrent streams through one gateway process: do tokens keep flowing?

256 clients stream at once from a gateway process (one worker, one core at
most) whose extractive model emits a token every 20 ms. The client records the
largest gap between consecutive SSE events of every stream, compared with the
20 ms the model itself takes.

Target (issue 3): >= 256 concurrent streams per gateway core with no stall
(gap) > 200 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx

from bench.inference.overhead import MESSAGES, gateway_process

TOKEN_INTERVAL_S = 0.02


async def one_stream(client: httpx.AsyncClient, base: str) -> dict[str, float]:
    body = {"model": "extractive", "messages": MESSAGES, "max_tokens": 64, "stream": True}
    t0 = time.perf_counter()
    last = t0
    worst = 0.0
    events = 0
    async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            now = time.perf_counter()
            if events:
                worst = max(worst, now - last)
            last = now
            events += 1
    return {"worst_gap_s": worst, "events": events, "duration_s": time.perf_counter() - t0}


async def measure(base: str, streams: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(one_stream(client, base) for _ in range(8)))  # warm-up
        results = await asyncio.gather(*(one_stream(client, base) for _ in range(streams)))
    gaps = sorted(r["worst_gap_s"] for r in results)
    q = statistics.quantiles(gaps, n=100, method="inclusive")
    return {
        "streams": streams,
        "token_interval_ms": TOKEN_INTERVAL_S * 1e3,
        "worst_gap_p50_ms": q[49] * 1e3,
        "worst_gap_p99_ms": q[98] * 1e3,
        "worst_gap_max_ms": gaps[-1] * 1e3,
        "streams_with_stall_over_200ms": sum(g > 0.2 for g in gaps),
    }


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    model = {"kind": "extractive", "scorer": "lexical", "token_delay_s": TOKEN_INTERVAL_S}
    out = []
    with gateway_process({"extractive": model}) as base:
        for streams in (64, 256):
            result = asyncio.run(measure(base, streams))
            print(
                f"streams={streams:<4} worst gap p50={result['worst_gap_p50_ms']:.0f}ms "
                f"p99={result['worst_gap_p99_ms']:.0f}ms max={result['worst_gap_max_ms']:.0f}ms "
                f"(model: {result['token_interval_ms']:.0f}ms/token); "
                f"streams stalled >200ms: {result['streams_with_stall_over_200ms']}",
                flush=True,
            )
            out.append(result)
    return out
