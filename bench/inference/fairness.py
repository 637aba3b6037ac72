"""Load-balancing fairness over 4 replicas: power-of-two least-outstanding vs peers.

The pool router (``lanewise.inference.pools``) sends requests to 4 in-process
replicas with seeded random service times, at c=1 and c=64; the same workload
runs through two reference policies: global least-busy with first-index ties
(the LiteLLM ``least-busy`` behaviour behind PR #40401's 93.7% collapse) and
uniform random. Reported: each replica's share and the worst deviation from
the fair 25%.

Target (issue 3): every replica within ±10% of its fair share (worst
deviation <= 0.10 x 25%) for lanewise at both concurrencies.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from lanewise.core.types import ChatChunk, ChatRequest, Message, Usage
from lanewise.inference.completion import collect
from lanewise.inference.pools.balancer import Replica
from lanewise.inference.pools.breaker import CircuitBreaker
from lanewise.inference.pools.router import Pool, PoolBackend

REPLICAS = 4


class TimedReplica:
    def __init__(self, name: str, rng: random.Random) -> None:
        self.name = name
        self.rng = rng

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await asyncio.sleep(self.rng.expovariate(1 / 0.002))
        yield ChatChunk(delta=self.name)
        yield ChatChunk(finish_reason="stop", usage=Usage(completion_tokens=1))

    async def generate(self, request: ChatRequest) -> Any:
        return await collect(request.model, self.stream(request))


def least_busy_first(replicas: list[Replica], rng: random.Random) -> Replica:
    return min(replicas, key=lambda r: r.outstanding)


def uniform(replicas: list[Replica], rng: random.Random) -> Replica:
    return rng.choice(replicas)


async def run_policy(
    policy: str, pick: Callable[[list[Replica], random.Random], Replica] | None, c: int, n: int
) -> dict[str, Any]:
    rng = random.Random(1234)
    replicas = [
        Replica(f"r{i}", TimedReplica(f"r{i}", rng), CircuitBreaker()) for i in range(REPLICAS)
    ]
    backend = PoolBackend(
        {"interactive": Pool("interactive", replicas, warm=True, spot=False)},
        rng=random.Random(99),
    )
    request = ChatRequest(model="m", messages=[Message(role="user", content="x")])

    async def via_reference() -> str:
        assert pick is not None
        replica = pick(replicas, rng)
        replica.outstanding += 1
        try:
            return (await replica.backend.generate(request)).text
        finally:
            replica.outstanding -= 1

    async def via_lanewise() -> str:
        return (await backend.generate(request)).text

    call = via_lanewise if pick is None else via_reference
    sem = asyncio.Semaphore(c)

    async def one() -> str:
        async with sem:
            return await call()

    counts = Counter(await asyncio.gather(*(one() for _ in range(n))))
    shares = {f"r{i}": counts.get(f"r{i}", 0) / n for i in range(REPLICAS)}
    fair = 1 / REPLICAS
    worst = max(abs(s - fair) / fair for s in shares.values())
    return {"policy": policy, "concurrency": c, "n": n, "shares": shares, "worst_deviation": worst}


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    n = 4000 if quick else 20000
    out = []
    for c in (1, 64):
        for policy, pick in (
            ("lanewise p2c least-outstanding", None),
            ("least-busy, first-index ties", least_busy_first),
            ("uniform random", uniform),
        ):
            result = asyncio.run(run_policy(policy, pick, c, n))
            shares = " ".join(f"{k}={v:.3f}" for k, v in result["shares"].items())
            print(
                f"{policy:>32} c={c:<3} {shares} worst={result['worst_deviation']:.1%}",
                flush=True,
            )
            out.append(result)
    return out
