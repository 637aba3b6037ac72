"""A real Redis killed and restarted empty: fail-open/closed, then an exact rebuild."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from lanewise.core.types import Message, Principal, Usage
from lanewise.governance.budgets import applicable
from lanewise.governance.errors import BudgetExceeded, BudgetStoreUnavailable
from lanewise.governance.governor import CallInfo
from lanewise.governance.runtime import build
from lanewise.governance.settings import GovernanceSettings

ANN = Principal(tenant="acme", user="ann", key_id="k1")


def chat(rid: str, model: str = "m", max_tokens: int = 10) -> CallInfo:
    return CallInfo(
        operation="chat",
        model=model,
        principal=ANN,
        request_id=rid,
        messages=(Message(role="user", content="hi"),),
        max_tokens=max_tokens,
    )


async def spend(g: Any, rid: str, tokens: int, model: str = "m") -> None:
    meter = await g.governor.admit(chat(rid, model))
    await meter.settle("ok", Usage(prompt_tokens=tokens - 5, completion_tokens=5), 0.1)
    await g.governor.accounting.flush()
    if g.governor.fallback is not None:
        await g.governor.fallback.flush()


@pytest.mark.parametrize("ledger", ["sqlite", "postgres"])
async def test_redis_outage_fails_open_for_tokens_closed_for_cost_and_rebuilds_exactly(
    ledger: str, redis_server: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ledger_url = request.getfixturevalue("postgres_url") if ledger == "postgres" else None
    settings = GovernanceSettings.model_validate(
        {
            "store": "redis",
            "ledger_url": ledger_url,
            "budgets": [
                {"scope": "tenant", "window": "day", "limit": 100},
                {"scope": "tenant", "window": "day", "unit": "cost", "limit": 1.0},
            ],
            "prices": {
                "m": {"tokenizer": "whitespace"},
                "paid": {"input_per_million": 1.0, "tokenizer": "whitespace"},
            },
        }
    )
    g = build(settings, data_dir=tmp_path, redis_url=redis_server.url)
    try:
        await spend(g, "a", 40)
        redis_server.kill()
        # Tokens fail open: local limits, seeded from the ledger, still hold the budget.
        await spend(g, "b", 40)
        with pytest.raises(BudgetExceeded):
            await g.governor.admit(chat("c", max_tokens=30))
        # Cost budgets fail closed.
        with pytest.raises(BudgetStoreUnavailable) as refused:
            await g.governor.admit(chat("d", model="paid"))
        assert refused.value.status == 503
        redis_server.start()
        # Redis came back empty: the first call rebuilds the counters from the ledger.
        with pytest.raises(BudgetExceeded) as over:
            await g.governor.admit(chat("e", max_tokens=30))
        assert over.value.extensions["used"] == 80
        counters = applicable(g.catalogue.budgets(), ANN, "", time.time())
        usage = await g.governor.accounting.usage(counters)
        by_unit = {c.budget.unit: u for c, u in zip(counters, usage, strict=True)}
        assert by_unit["tokens"] == (80, 0)
        assert sum(c.prompt_tokens + c.completion_tokens for c in g.ledger.charges()) == 80
    finally:
        await g.aclose()


def tokens_settings() -> GovernanceSettings:
    return GovernanceSettings.model_validate(
        {
            "store": "redis",
            "contention_wait_s": 0,
            "budgets": [{"scope": "tenant", "window": "day", "limit": 100}],
            "prices": {"m": {"tokenizer": "whitespace"}},
        }
    )


async def settle_queued(g: Any, rid: str, tokens: int) -> None:
    """A call that completes, its charge still queued for the background writers."""
    meter = await g.governor.admit(chat(rid))
    await meter.settle("ok", Usage(prompt_tokens=tokens - 5, completion_tokens=5), 0.1)


async def refused_at_80(g: Any) -> None:
    """80 of the 100 spent: 31 more (1 prompt token + max_tokens 30) does not fit."""
    with pytest.raises(BudgetExceeded) as over:
        await g.governor.admit(chat("over", max_tokens=30))
    assert over.value.extensions["used"] == 80


async def test_local_limits_count_charges_still_queued_when_redis_dies(
    redis_server: Any, tmp_path: Path
) -> None:
    g = build(tokens_settings(), data_dir=tmp_path, redis_url=redis_server.url)
    # The shared writer lingers long: the first charge is still queued, not in the ledger.
    g.governor.accounting.linger_s = 5.0
    try:
        await settle_queued(g, "before", 40)
        redis_server.kill()
        await settle_queued(g, "during", 40)  # local limits: seeded from the ledger
        await g.governor.fallback.flush()
        await refused_at_80(g)
    finally:
        await g.aclose()
    assert sum(c.prompt_tokens + c.completion_tokens for c in g.ledger.charges()) == 80


async def test_a_rebuild_after_the_outage_counts_charges_still_queued(
    redis_server: Any, tmp_path: Path
) -> None:
    g = build(tokens_settings(), data_dir=tmp_path, redis_url=redis_server.url)
    # Writers that linger long: the charge settled during the outage stays queued.
    g.governor.accounting.linger_s = g.governor.fallback.linger_s = 5.0
    try:
        await spend(g, "before", 40)
        redis_server.kill()
        await settle_queued(g, "during", 40)
        redis_server.start()  # empty: the next call rebuilds the counters from the ledger
        await refused_at_80(g)
    finally:
        await g.aclose()
    assert sum(c.prompt_tokens + c.completion_tokens for c in g.ledger.charges()) == 80


async def test_a_call_admitted_before_the_outage_and_settled_during_it_counts_locally(
    redis_server: Any, tmp_path: Path
) -> None:
    g = build(tokens_settings(), data_dir=tmp_path, redis_url=redis_server.url)
    try:
        in_flight = await g.governor.admit(chat("in-flight"))
        redis_server.kill()
        await spend(g, "during", 40)  # local limits, from a ledger still empty: 40
        await in_flight.settle("ok", Usage(prompt_tokens=35, completion_tokens=5), 0.1)
        await g.governor.fallback.flush()
        await refused_at_80(g)
    finally:
        await g.aclose()


async def test_unsettled_reservations_expire(redis_server: Any, tmp_path: Path) -> None:
    settings = GovernanceSettings.model_validate(
        {
            "store": "redis",
            "reservation_ttl_s": 0.5,
            "contention_wait_s": 0,
            "budgets": [{"scope": "tenant", "window": "day", "limit": 30}],
            "prices": {"m": {"tokenizer": "whitespace"}},
        }
    )
    g = build(settings, data_dir=tmp_path, redis_url=redis_server.url)
    try:
        await g.governor.admit(chat("killed", max_tokens=20))  # never settled: a dead gateway
        with pytest.raises(BudgetExceeded):
            await g.governor.admit(chat("next", max_tokens=20))
        import asyncio

        await asyncio.sleep(0.6)
        await g.governor.admit(chat("after-ttl", max_tokens=20))
    finally:
        await g.aclose()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_settlement_racing_a_rebuild_counts_once(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from lanewise.governance.accounting import Accounting
    from lanewise.governance.budgets import Budget
    from lanewise.governance.ledger import Charge, Ledger
    from lanewise.governance.redis_store import RedisStore
    from lanewise.governance.store import Hold, MemoryStore, Settlement

    budget = Budget(scope="tenant", subject="*", window="lifetime", unit="tokens", limit=1000)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'l.db'}")
    store: Any = (
        RedisStore(request.getfixturevalue("redis_server").url)
        if kind == "redis"
        else MemoryStore()
    )
    accounting = Accounting(store, ledger, budgets=lambda: [budget], reservation_ttl_s=60)
    now = time.time()
    (counter,) = applicable([budget], ANN, "", now)

    def charge(rid: str, tokens: int) -> tuple[Charge, Settlement]:
        c = Charge(
            id=rid,
            ts=now,
            settled_at=now,
            request_id=rid,
            tenant="acme",
            user=None,
            key_id=None,
            workflow=None,
            model="m",
            operation="chat",
            purpose="request",
            status="ok",
            prompt_tokens=tokens,
            completion_tokens=0,
            cost_nano=0,
        )
        return c, Settlement(reservation_id=rid, charge_id=rid, amounts=((counter, tokens),))

    try:
        for rid in ("in-snapshot", "after-snapshot"):
            await accounting.admit(rid, [], [Hold(counter, 10)], min_allowance=0, max_allowance=0)
        # The first charge reaches the ledger, then the counters vanish and are rebuilt
        # from it before that charge's settlement arrives.
        first, first_settlement = charge("in-snapshot", 7)
        ledger.record([first])
        if kind == "redis":
            await store.redis.flushall()
        else:
            store.wipe()
        assert await accounting.rebuild()
        assert await store.settle([first_settlement], now=now)
        second, second_settlement = charge("after-snapshot", 5)
        accounting.settle(second, second_settlement)
        await accounting.flush()
        assert await accounting.usage([counter]) == [(12, 0)]
        assert ledger.spent(budget, "acme", now) == 12
    finally:
        await accounting.aclose()
        ledger.close()


async def test_readiness_follows_the_budget_store(redis_server: Any, tmp_path: Path) -> None:
    from lanewise.governance.health import StoreHealth

    settings = GovernanceSettings.model_validate({"store": "redis"})
    g = build(settings, data_dir=tmp_path, redis_url=redis_server.url)
    try:
        health = StoreHealth(g)
        assert await health.check() is None
        redis_server.kill()
        reason = await health.check()
        assert reason is not None
        assert "unreachable" in reason
        redis_server.start()
        assert await health.check() is None
    finally:
        await g.aclose()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_live_hold_can_be_extended_past_its_ttl(
    kind: str, request: pytest.FixtureRequest
) -> None:
    from lanewise.governance.budgets import Budget
    from lanewise.governance.redis_store import RedisStore
    from lanewise.governance.store import Hold, MemoryStore, Snapshot

    store: Any = MemoryStore()
    if kind == "redis":
        store = RedisStore(request.getfixturevalue("redis_server").url)
    budget = Budget(scope="tenant", subject="*", window="lifetime", unit="tokens", limit=100)
    now = time.time()
    (counter,) = applicable([budget], ANN, "", now)
    try:
        await store.rebuild(Snapshot(counters={}, charge_ids=(), marker_ttl_s=60), now=now)
        for rid in ("kept", "dropped"):
            admitted = await store.admit(
                rid, [], [Hold(counter, 30)], min_allowance=0, max_allowance=0, now=now, ttl_s=10
            )
            assert admitted.status == "ok"
        assert await store.extend("kept", [counter], now=now + 8, ttl_s=10) == 1
        assert await store.usage([counter], now=now + 11) == [(0, 30)]
        assert await store.usage([counter], now=now + 19) == [(0, 0)]
        # An expired hold is gone for good: extending it does nothing.
        assert await store.extend("dropped", [counter], now=now + 20, ttl_s=10) == 0
    finally:
        await store.aclose()


async def test_a_long_stream_keeps_its_hold(tmp_path: Path) -> None:
    settings = GovernanceSettings.model_validate(
        {
            "reservation_ttl_s": 0.3,
            "contention_wait_s": 0,
            "budgets": [{"scope": "tenant", "window": "day", "limit": 100}],
            "prices": {"m": {"tokenizer": "whitespace"}},
        }
    )
    g = build(settings, data_dir=tmp_path, redis_url=None)
    try:
        meter = await g.governor.admit(chat("long", max_tokens=60))
        for _ in range(8):  # 0.8 s of streaming: well past the 0.3 s TTL
            await asyncio.sleep(0.1)
            assert meter.on_delta("w") is None
        with pytest.raises(BudgetExceeded):
            await g.governor.admit(chat("other", max_tokens=60))
    finally:
        await g.aclose()
