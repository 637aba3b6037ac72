"""A real Redis killed and restarted empty: fail-open/closed, then an exact rebuild."""

from __future__ import annotations

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


async def test_redis_outage_fails_open_for_tokens_closed_for_cost_and_rebuilds_exactly(
    redis_server: Any, tmp_path: Path
) -> None:
    settings = GovernanceSettings.model_validate(
        {
            "store": "redis",
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


async def test_unsettled_reservations_expire(redis_server: Any, tmp_path: Path) -> None:
    settings = GovernanceSettings.model_validate(
        {
            "store": "redis",
            "reservation_ttl_s": 0.5,
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
