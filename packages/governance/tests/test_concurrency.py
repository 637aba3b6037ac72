"""Two replicas, one Redis, 400 concurrent calls against a small budget."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from lanewise.core.types import Message, Principal, Usage
from lanewise.governance.errors import BudgetExceeded
from lanewise.governance.governor import CallInfo
from lanewise.governance.runtime import build
from lanewise.governance.settings import GovernanceSettings

ANN = Principal(tenant="acme", user="ann", key_id="k1")
LIMIT = 2_000
MAX_TOKENS = 20


async def test_two_replicas_never_overspend_and_refuse_only_what_does_not_fit(
    redis_server: Any, tmp_path: Path
) -> None:
    settings = GovernanceSettings.model_validate(
        {
            "store": "redis",
            "budgets": [{"scope": "tenant", "window": "day", "limit": LIMIT}],
            "prices": {"m": {"tokenizer": "whitespace"}},
        }
    )
    replicas = [build(settings, data_dir=tmp_path, redis_url=redis_server.url) for _ in range(2)]
    rng = random.Random(7)

    async def one(i: int) -> tuple[str, int]:
        governor = replicas[i % 2].governor
        call = CallInfo(
            operation="chat",
            model="m",
            principal=ANN,
            request_id=f"r{i}",
            messages=(Message(role="user", content="word " * rng.randint(1, 30)),),
            max_tokens=MAX_TOKENS,
        )
        try:
            meter = await governor.admit(call)
        except BudgetExceeded:
            return "refused", governor.count_prompt(call) + MAX_TOKENS
        await asyncio.sleep(rng.random() / 100)  # the upstream call
        # The backend reports exactly what was reserved: any refusal is then avoidable
        # only if budget was left over at the end.
        await meter.settle(
            "ok", Usage(prompt_tokens=meter.prompt_tokens, completion_tokens=MAX_TOKENS), 0.01
        )
        return "ok", meter.prompt_tokens + MAX_TOKENS

    try:
        results = await asyncio.gather(*(one(i) for i in range(400)))
        for replica in replicas:
            await replica.governor.accounting.flush()
        charges = replicas[0].ledger.charges()
        settled = sum(c.prompt_tokens + c.completion_tokens for c in charges)
        admitted = [need for status, need in results if status == "ok"]
        refused = [need for status, need in results if status == "refused"]
        assert len(charges) == len(admitted)
        assert settled == sum(admitted)
        assert settled <= LIMIT
        assert refused, "the budget is small enough that some calls must be refused"
        # False rejections: refused calls that what was left at the end could still have
        # served (smallest first).
        left, false_rejections = LIMIT - settled, 0
        for need in sorted(refused):
            if need > left:
                break
            left, false_rejections = left - need, false_rejections + 1
        assert false_rejections <= 0.01 * len(results)
    finally:
        for replica in replicas:
            await replica.aclose()
