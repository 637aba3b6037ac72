"""The ``[governance]`` section of ``lanewise.toml``, owned by this lane."""

from __future__ import annotations

from typing import Any, Literal

from lanewise.core.settings import Section
from pydantic import Field, field_validator, model_validator

Scope = Literal["request", "key", "user", "tenant", "workflow"]
Window = Literal["minute", "hour", "day", "month", "lifetime"]
Unit = Literal["tokens", "cost"]
OnOutage = Literal["closed", "open"]
RateScope = Literal["key", "user", "tenant"]

EACH = "*"
"""A budget or rate limit whose subject is ``*`` applies to each subject separately."""


class BudgetConfig(Section):
    """A budget declared in the file (``lanewise budgets set`` stores more in the ledger)."""

    scope: Scope
    subject: str = Field(EACH, min_length=1, description="tenant/user/key/workflow id, or '*'")
    window: Window = "day"
    unit: Unit = "tokens"
    limit: float = Field(ge=0, description="tokens, or USD when unit = 'cost'")
    shadow: bool = Field(False, description="measure and report, never refuse")

    @model_validator(mode="after")
    def _request_scope_is_each(self) -> BudgetConfig:
        if self.scope == "request" and self.subject != EACH:
            raise ValueError("a request-scope budget applies to every request: subject = '*'")
        return self


class RateLimitConfig(Section):
    scope: RateScope
    subject: str = Field(EACH, min_length=1)
    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="tokens per minute (prompt + completion)")
    shadow: bool = False

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimitConfig:
        if self.rpm is None and self.tpm is None:
            raise ValueError("a rate limit needs rpm, tpm or both")
        return self


class ModelPrice(Section):
    """Price of one model: per million tokens, or GPU time in a pool (self-hosted)."""

    model: str = Field(min_length=1)
    input_per_million: float = Field(0.0, ge=0)
    output_per_million: float = Field(0.0, ge=0)
    pool: str | None = Field(None, description="self-hosted: the pool whose hourly price applies")
    tokenizer: str = Field("auto", description="'auto', 'whitespace' or a path to a tokenizer.json")


class AdminKeyConfig(Section):
    """An admin key, stored as SHA-256; ``tenant`` limits it to one tenant."""

    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    tenant: str | None = None


class GovernanceSettings(Section):
    enabled: bool = True
    store: Literal["memory", "redis"] = Field(
        "memory", description="hot counters: in-process, or Redis at redis_url (replicas share)"
    )
    ledger_url: str | None = Field(
        None, description="SQLAlchemy URL of the durable ledger; default SQLite in data_dir"
    )
    default_max_tokens: int = Field(
        1024, ge=1, description="completion tokens reserved when a call names no max_tokens"
    )
    reservation_ttl_s: float = Field(
        300.0, gt=0, description="an unsettled reservation (a killed gateway) is released after"
    )
    contention_wait_s: float = Field(
        0.5,
        ge=0,
        description="a call that only in-flight holds keep out waits this long for them",
    )
    on_outage_tokens: OnOutage = Field(
        "open", description="Redis unreachable: token budgets use local limits (open) or refuse"
    )
    on_outage_cost: OnOutage = Field("closed", description="the same for cost budgets")
    key_cache_s: float = Field(
        2.0, ge=0, description="how long a replica trusts a looked-up key (revocation delay)"
    )
    budgets: list[BudgetConfig] = Field(default_factory=list)
    rate_limits: list[RateLimitConfig] = Field(default_factory=list)
    prices: list[ModelPrice] = Field(
        default_factory=list,
        description="[[governance.prices]] with model = ..., or [governance.prices.<model>]",
    )
    pools: dict[str, float] = Field(
        default_factory=dict, description="hourly USD price of a replica in each pool"
    )
    gpu_reserve_s: float = Field(
        30.0, gt=0, description="GPU seconds reserved for a self-hosted call (settled on actual)"
    )
    admin_keys: list[AdminKeyConfig] = Field(default_factory=list)

    @field_validator("prices", mode="before")
    @classmethod
    def _prices_by_model(cls, value: Any) -> Any:
        # ``[governance.prices.<model>]`` tables read naturally in TOML; keep them.
        if isinstance(value, dict):
            return [{"model": name, **dict(table)} for name, table in value.items()]
        return value

    def price(self, model: str) -> ModelPrice | None:
        return next((p for p in self.prices if p.model == model), None)
