"""The governor on its own: refusals, stream cuts, cost, shadow mode, rate limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from lanewise.core.types import Message, Principal, Usage
from lanewise.governance.errors import BudgetExceeded, RateLimited
from lanewise.governance.governor import CallInfo
from lanewise.governance.runtime import Governance, build
from lanewise.governance.settings import GovernanceSettings

ANN = Principal(tenant="acme", user="ann", key_id="k1")
BOB = Principal(tenant="globex", user="bob", key_id="k2")

Factory = Callable[..., Any]


@pytest.fixture
async def governance(tmp_path: Path) -> AsyncIterator[Factory]:
    built: list[Governance] = []

    def make(**section: Any) -> Governance:
        g = build(
            GovernanceSettings.model_validate(section),
            data_dir=tmp_path / f"g{len(built)}",
            redis_url=None,
        )
        built.append(g)
        return g

    yield make
    for g in built:
        await g.aclose()


def chat(
    principal: Principal,
    text: str = "hello there",
    *,
    max_tokens: int | None = None,
    model: str = "m",
    rid: str = "r1",
) -> CallInfo:
    return CallInfo(
        operation="chat",
        model=model,
        principal=principal,
        request_id=rid,
        messages=(Message(role="user", content=text),),
        max_tokens=max_tokens,
    )


async def test_refusal_names_the_budget(governance: Factory) -> None:
    g = governance(
        budgets=[{"scope": "tenant", "subject": "acme", "window": "day", "limit": 100}],
        prices={"m": {"tokenizer": "whitespace"}},
    )
    meter = await g.governor.admit(chat(ANN, max_tokens=50))
    await meter.settle("ok", Usage(prompt_tokens=10, completion_tokens=50), 0.1)
    await g.governor.accounting.flush()
    with pytest.raises(BudgetExceeded) as refused:
        await g.governor.admit(chat(ANN, max_tokens=50, rid="r2"))
    error = refused.value
    assert error.status == 429
    assert error.type_uri.endswith("/budget-exceeded")
    budget = error.extensions["budget"]
    assert (budget["scope"], budget["subject"], budget["window"]) == ("tenant", "acme", "day")
    assert (budget["limit"], budget["used"], budget["remaining"]) == (100, 60, 40)
    assert budget["reset"] is not None
    assert error.retry_after_s is not None
    assert 0 < error.retry_after_s <= 86_400
    # Another tenant is untouched by acme's budget.
    await g.governor.admit(chat(BOB, max_tokens=50, rid="r3"))


async def test_without_max_tokens_the_allowance_shrinks_to_what_is_left(
    governance: Factory,
) -> None:
    g = governance(
        budgets=[{"scope": "tenant", "window": "day", "limit": 40}],
        prices={"m": {"tokenizer": "whitespace"}},
        default_max_tokens=1000,
    )
    meter = await g.governor.admit(chat(ANN, "one two three"))
    prompt = meter.prompt_tokens
    assert meter.allowance == 40 - prompt
    stop = None
    sent = 0
    while stop is None:
        stop = meter.on_delta("word")
        sent += 1
    assert sent <= meter.allowance
    assert stop["type"] == "budget-exceeded"
    assert stop["budget"]["scope"] == "tenant"
    await meter.settle("ok", Usage(), 0.1)
    await g.governor.accounting.flush()
    spent = g.ledger.charges()[0]
    assert spent.prompt_tokens + spent.completion_tokens <= 40


async def test_a_free_model_is_never_blocked_by_a_cost_budget(governance: Factory) -> None:
    g = governance(
        budgets=[{"scope": "tenant", "window": "day", "unit": "cost", "limit": 0.0}],
        prices={
            "paid": {"input_per_million": 1.0, "output_per_million": 2.0, "tokenizer": "whitespace"}
        },
    )
    for i in range(3):
        meter = await g.governor.admit(chat(ANN, model="free", max_tokens=100, rid=f"f{i}"))
        await meter.settle("ok", Usage(prompt_tokens=5, completion_tokens=100), 0.1)
    with pytest.raises(BudgetExceeded):
        await g.governor.admit(chat(ANN, model="paid", max_tokens=100))


async def test_cost_is_tokens_at_price_plus_gpu_time_at_the_pool_price(governance: Factory) -> None:
    g = governance(
        budgets=[{"scope": "tenant", "window": "month", "unit": "cost", "limit": 10.0}],
        prices={
            "api": {
                "input_per_million": 3.0,
                "output_per_million": 15.0,
                "tokenizer": "whitespace",
            },
            "selfhosted": {"pool": "interactive", "tokenizer": "whitespace"},
        },
        pools={"interactive": 3.6},
    )
    meter = await g.governor.admit(chat(ANN, model="api", max_tokens=10))
    await meter.settle("ok", Usage(prompt_tokens=1000, completion_tokens=2000), 1.0)
    meter = await g.governor.admit(chat(ANN, model="selfhosted", max_tokens=10, rid="r2"))
    await meter.settle("ok", Usage(prompt_tokens=1000, completion_tokens=2000), 2.5)
    await g.governor.accounting.flush()
    api, selfhosted = g.ledger.charges()
    assert api.cost_nano == 1000 * 3000 + 2000 * 15000  # $0.033
    assert selfhosted.cost_nano == 2_500_000  # 2.5 s of a $3.60/h replica = $0.0025
    assert selfhosted.gpu_s == 2.5


async def test_shadow_budgets_measure_but_never_refuse(governance: Factory) -> None:
    g = governance(
        budgets=[{"scope": "user", "window": "minute", "limit": 5, "shadow": True}],
        prices={"m": {"tokenizer": "whitespace"}},
    )
    for i in range(3):
        meter = await g.governor.admit(chat(ANN, max_tokens=50, rid=f"s{i}"))
        await meter.settle("ok", Usage(prompt_tokens=5, completion_tokens=50), 0.1)
    await g.governor.accounting.flush()
    assert sum(c.completion_tokens for c in g.ledger.charges()) == 150


async def test_rpm_is_enforced_per_key_with_retry_after(governance: Factory) -> None:
    g = governance(
        rate_limits=[{"scope": "key", "rpm": 3}], prices={"m": {"tokenizer": "whitespace"}}
    )
    for i in range(3):
        await g.governor.admit(chat(ANN, max_tokens=1, rid=f"q{i}"))
    with pytest.raises(RateLimited) as refused:
        await g.governor.admit(chat(ANN, max_tokens=1, rid="q4"))
    assert 0 < refused.value.retry_after_s <= 20.0 + 1e-6
    assert refused.value.type_uri.endswith("/rate-limited")
    # Another key has its own allowance; retrieval's query embedding is not a request.
    await g.governor.admit(chat(BOB, max_tokens=1, rid="q5"))
    await g.governor.admit(
        CallInfo(
            operation="embedding",
            model="m",
            principal=ANN,
            request_id="q6",
            purpose="retrieval.query",
            inputs=("hi",),
        )
    )


async def test_the_whole_request_counts_against_a_request_budget(governance: Factory) -> None:
    g = governance(
        budgets=[{"scope": "request", "window": "lifetime", "limit": 60}],
        prices={"m": {"tokenizer": "whitespace"}},
    )
    embed = await g.governor.admit(
        CallInfo(
            operation="embedding",
            model="m",
            principal=ANN,
            request_id="big",
            purpose="retrieval.query",
            inputs=("a " * 30,),
        )
    )
    await embed.settle("ok", Usage(prompt_tokens=30), 0.01)
    with pytest.raises(BudgetExceeded):
        await g.governor.admit(chat(ANN, max_tokens=40, rid="big"))
    await g.governor.admit(chat(ANN, max_tokens=40, rid="other"))


async def test_tpm_counts_the_completion_at_settlement(governance: Factory) -> None:
    g = governance(
        rate_limits=[{"scope": "user", "tpm": 100}], prices={"m": {"tokenizer": "whitespace"}}
    )
    meter = await g.governor.admit(chat(ANN, max_tokens=10, rid="t1"))  # ~9 prompt tokens
    await meter.settle("ok", Usage(prompt_tokens=meter.prompt_tokens, completion_tokens=85), 0.1)
    await g.governor.accounting.flush()
    # 9 + 85 of 100 tokens this minute are spent: the next prompt does not fit.
    with pytest.raises(RateLimited) as refused:
        await g.governor.admit(chat(ANN, max_tokens=10, rid="t2"))
    assert "TPM" in refused.value.detail
    await g.governor.admit(chat(BOB, max_tokens=10, rid="t3"))


async def test_a_callers_own_max_tokens_is_left_to_the_model(governance: Factory) -> None:
    g = governance(prices={"m": {"tokenizer": "whitespace"}}, default_max_tokens=5)
    explicit = await g.governor.admit(chat(ANN, max_tokens=3))
    assert all(explicit.on_delta("w") is None for _ in range(3))
    # Without max_tokens the default cap is the allowance, and the stream is cut there.
    capped = await g.governor.admit(chat(ANN, rid="r2"))
    stops = [capped.on_delta("w") for _ in range(5)]
    assert stops[:4] == [None] * 4
    assert stops[4] is not None
    assert stops[4]["type"] == "max-tokens"
