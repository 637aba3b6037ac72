"""Budget definitions and the counters a model call is charged against.

Amounts are integers: tokens, or nano-USD for cost budgets (so a price of
$0.15 per million tokens is exactly 150 per token and Redis can ``INCRBY``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from lanewise.core.types import Principal
from lanewise.governance.settings import EACH, BudgetConfig, Scope, Unit, Window
from lanewise.governance.windows import bucket, bucket_id

NANO_PER_USD = 1_000_000_000
REQUEST_BUDGET_TTL_S = 86_400.0
"""Counters of request-scope budgets outlive any request by far, then expire."""


@lru_cache(maxsize=4096)  # asked on every call for every budget; a hash each time adds up
def budget_id(scope: Scope, subject: str, window: Window, unit: Unit) -> str:
    """Stable id: setting the same budget again replaces its limit."""
    raw = f"{scope}|{subject}|{window}|{unit}".encode()
    return "b_" + hashlib.sha256(raw).hexdigest()[:12]


def to_amount(unit: Unit, value: float) -> int:
    return round(value * NANO_PER_USD) if unit == "cost" else round(value)


def from_amount(unit: Unit, amount: int) -> float:
    return amount / NANO_PER_USD if unit == "cost" else float(amount)


@dataclass(frozen=True, slots=True)
class Budget:
    scope: Scope
    subject: str
    window: Window
    unit: Unit
    limit: int
    shadow: bool = False
    tenant: str | None = None
    """The tenant that owns the budget (None: a deployment-wide budget from the file)."""

    @property
    def id(self) -> str:
        return budget_id(self.scope, self.subject, self.window, self.unit)

    @classmethod
    def from_config(cls, config: BudgetConfig) -> Budget:
        return cls(
            scope=config.scope,
            subject=config.subject,
            window=config.window,
            unit=config.unit,
            limit=to_amount(config.unit, config.limit),
            shadow=config.shadow,
        )

    def describe(self) -> str:
        who = "each" if self.subject == EACH else repr(self.subject)
        return f"{self.unit} budget of {who} {self.scope} per {self.window}"


def subject_of(scope: Scope, principal: Principal, request_id: str) -> str | None:
    """Which subject of ``scope`` a call belongs to (None: the scope does not apply)."""
    if scope == "request":
        return request_id or None
    if scope == "tenant":
        return principal.tenant
    if scope == "user":
        return f"{principal.tenant}/{principal.user}" if principal.user else None
    if scope == "key":
        return principal.key_id
    return f"{principal.tenant}/{principal.workflow}" if principal.workflow else None


@dataclass(frozen=True, slots=True)
class Counter:
    """One budget's counter for one subject in one window bucket."""

    budget: Budget
    subject: str
    key: str
    reset_at: float
    """When the window rolls over (``inf`` for lifetime)."""
    expire_at: float
    """When the store may drop the counter (the ledger still has every charge)."""


def counter_for(budget: Budget, subject: str, now: float) -> Counter:
    _, end = bucket(budget.window, now)
    key = f"{budget.id}:{subject}:{bucket_id(budget.window, now)}"
    expire_at = now + REQUEST_BUDGET_TTL_S if budget.scope == "request" else end + 60.0
    return Counter(budget=budget, subject=subject, key=key, reset_at=end, expire_at=expire_at)


def applicable(
    budgets: list[Budget], principal: Principal, request_id: str, now: float
) -> list[Counter]:
    counters: list[Counter] = []
    for budget in budgets:
        subject = subject_of(budget.scope, principal, request_id)
        if subject is None or (budget.subject not in (EACH, subject)):
            continue
        counters.append(counter_for(budget, subject, now))
    return counters
