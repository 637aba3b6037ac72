"""GCRA: the Lua script and the in-process store agree, and both keep the rate."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from lanewise.governance.redis_store import RedisStore
from lanewise.governance.store import MemoryStore, RateCharge, Snapshot

START = 1_900_000_000.0
EMPTY = Snapshot(counters={}, charge_ids=(), marker_ttl_s=60.0)

requests = st.lists(
    st.tuples(st.floats(0, 5.0), st.integers(1, 30)),  # (seconds since last, cost)
    min_size=1,
    max_size=60,
)


async def _decisions(store: Any, limit: int, calls: list[tuple[float, int]]) -> list[float]:
    await store.rebuild(EMPTY, now=START)
    now, verdicts = START, []
    for i, (gap, cost) in enumerate(calls):
        now += gap
        charge = RateCharge(key="tpm:acme", limit=limit, cost=cost)
        admission = await store.admit(
            f"r{i}", [charge], [], min_allowance=0, max_allowance=0, now=now, ttl_s=60.0
        )
        verdicts.append(0.0 if admission.status == "ok" else admission.retry_after_s)
    return verdicts


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(10, 120), calls=requests)
def test_gcra_never_admits_more_than_a_minute_of_burst_plus_the_rate(
    limit: int, calls: list[tuple[float, int]]
) -> None:
    verdicts = asyncio.run(_decisions(MemoryStore(), limit, calls))
    times, now = [], START
    for gap, _ in calls:
        now += gap
        times.append(now)
    for i, start in enumerate(times):
        # Over any span of t seconds GCRA admits at most limit * (1 + t / 60) units.
        admitted = 0
        for j in range(i, len(times)):
            if verdicts[j] == 0.0:
                admitted += calls[j][1]
            span = times[j] - start
            assert admitted <= limit * (1 + span / 60.0) + 1e-6
    # A refusal says when the same call would be admitted (if it fits a minute at all).
    assert all(v <= 60.0 for v, (_, cost) in zip(verdicts, calls, strict=True) if cost <= limit)


def test_redis_and_memory_decide_alike(redis_server: Any) -> None:
    @settings(max_examples=25, deadline=None)
    @given(limit=st.integers(10, 120), calls=requests)
    def check(limit: int, calls: list[tuple[float, int]]) -> None:
        async def both() -> tuple[list[float], list[float]]:
            redis = RedisStore(redis_server.url)
            try:
                await redis.redis.flushall()
                return await _decisions(MemoryStore(), limit, calls), await _decisions(
                    redis, limit, calls
                )
            finally:
                await redis.aclose()

        memory, in_redis = asyncio.run(both())
        assert [v == 0.0 for v in memory] == [v == 0.0 for v in in_redis]
        for a, b in zip(memory, in_redis, strict=True):
            assert abs(a - b) < 1e-3

    check()
