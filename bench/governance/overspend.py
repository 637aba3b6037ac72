"""Overspend under concurrency: lanewise's reservations vs a naive check-then-increment limiter.

Two replicas (separate Redis clients and ledgers' writers, one Redis, one
ledger) serve 400 concurrent calls against a small token budget. The naive
limiter reads the counter, lets the call through when the counter is below the
limit and adds the usage after the call — what gateways that charge after the
response do (envoyproxy/ai-gateway#2394). The same calls, the same upstream
latency, the same Redis, in one run.

Target: lanewise settles ≤ 1.00x the budget with ≤ 1% false rejections; the
naive limiter's overspend is reported beside it.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from lanewise.core.testing.services import RedisServer
from lanewise.core.types import Message, Principal, Usage
from lanewise.governance.errors import BudgetExceeded
from lanewise.governance.governor import CallInfo
from lanewise.governance.runtime import build
from lanewise.governance.settings import GovernanceSettings

CALLS = 400
LIMIT = 5_000
MAX_TOKENS = 64
ANN = Principal(tenant="acme", user="ann", key_id="k1")


def _calls(seed: int) -> list[tuple[str, int, float]]:
    """(prompt, completion tokens the model will produce, upstream seconds) per call."""
    rng = random.Random(seed)
    return [
        ("word " * rng.randint(5, 60), rng.randint(8, MAX_TOKENS), rng.uniform(0.005, 0.05))
        for _ in range(CALLS)
    ]


async def lanewise_run(
    url: str, data_dir: Path, calls: list[tuple[str, int, float]]
) -> dict[str, Any]:
    settings = GovernanceSettings.model_validate(
        {
            "store": "redis",
            "budgets": [{"scope": "tenant", "window": "day", "limit": LIMIT}],
            "prices": {"m": {"tokenizer": "whitespace"}},
        }
    )
    replicas = [build(settings, data_dir=data_dir, redis_url=url) for _ in range(2)]
    refused_needs: list[int] = []

    async def one(i: int, prompt: str, completion: int, seconds: float) -> None:
        governor = replicas[i % 2].governor
        call = CallInfo(
            operation="chat",
            model="m",
            principal=ANN,
            request_id=f"r{i}",
            messages=(Message(role="user", content=prompt),),
            max_tokens=MAX_TOKENS,
        )
        try:
            meter = await governor.admit(call)
        except BudgetExceeded:
            refused_needs.append(governor.count_prompt(call) + completion)
            return
        await asyncio.sleep(seconds)
        await meter.settle(
            "ok", Usage(prompt_tokens=meter.prompt_tokens, completion_tokens=completion), seconds
        )

    await asyncio.gather(*(one(i, *c) for i, c in enumerate(calls)))
    for replica in replicas:
        await replica.governor.accounting.flush()
    settled = sum(c.prompt_tokens + c.completion_tokens for c in replicas[0].ledger.charges())
    for replica in replicas:
        await replica.aclose()
    return _summary("lanewise (reserve, then settle)", settled, refused_needs)


async def naive_run(url: str, calls: list[tuple[str, int, float]]) -> dict[str, Any]:
    clients = [
        aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(url, max_connections=64)
        )
        for _ in range(2)
    ]
    await clients[0].delete("naive:acme")
    refused_needs: list[int] = []

    async def one(i: int, prompt: str, completion: int, seconds: float) -> None:
        client = clients[i % 2]
        need = len(prompt.split()) + 7 + completion
        used = int(await client.get("naive:acme") or 0)
        if used >= LIMIT:
            refused_needs.append(need)
            return
        await asyncio.sleep(seconds)
        await client.incrby("naive:acme", need)

    await asyncio.gather(*(one(i, *c) for i, c in enumerate(calls)))
    settled = int(await clients[0].get("naive:acme") or 0)
    for client in clients:
        await client.aclose()
        await client.connection_pool.disconnect()
    return _summary("naive (check, then increment)", settled, refused_needs)


def avoidable(refused_needs: list[int], settled: int, limit: int) -> int:
    """How many refused calls the budget left over could still have served (smallest first)."""
    left, count = limit - settled, 0
    for need in sorted(refused_needs):
        if need > left:
            break
        left -= need
        count += 1
    return count


def _summary(name: str, settled: int, refused_needs: list[int]) -> dict[str, Any]:
    false = avoidable(refused_needs, settled, LIMIT)
    return {
        "limiter": name,
        "budget": LIMIT,
        "settled": settled,
        "overspend_ratio": settled / LIMIT,
        "refused": len(refused_needs),
        "false_rejections": false,
        "false_rejection_rate": false / CALLS,
    }


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="lanewise-bench-gov-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            calls = _calls(11)

            async def both() -> list[dict[str, Any]]:
                ours = await lanewise_run(server.url, Path(tmp) / "ledger", calls)
                naive = await naive_run(server.url, calls)
                return [ours, naive]

            return asyncio.run(both())
        finally:
            server.stop()


if __name__ == "__main__":
    for row in run():
        print(row)
