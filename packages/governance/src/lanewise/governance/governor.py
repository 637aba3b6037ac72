"""Admit a model call against every rate limit and budget, meter it, settle it.

This is the lane's logic without the gateway around it: ``guard.py`` adapts
it to core's model-call guards, the tests drive it directly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from lanewise.core.types import Message, Principal, Usage
from lanewise.governance import refusals
from lanewise.governance.accounting import Accounting
from lanewise.governance.budgets import Budget, Counter, applicable, from_amount
from lanewise.governance.catalogue import Catalogue
from lanewise.governance.errors import BudgetExceeded, BudgetStoreUnavailable, RateLimited
from lanewise.governance.ledger import Charge
from lanewise.governance.pricing import Rates, rates_for
from lanewise.governance.settings import GovernanceSettings
from lanewise.governance.store import (
    Admission,
    Hold,
    MemoryStore,
    RateCharge,
    Settlement,
    StoreUnavailable,
)
from lanewise.governance.tokens import TokenCounter, counter_for, prompt_tokens

log = logging.getLogger("lanewise.governance")
CONTENTION_POLL_S = 0.02
Operation = Literal["chat", "completion", "embedding"]


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What governance needs to know of one model call."""

    operation: Operation
    model: str
    principal: Principal
    request_id: str
    purpose: str = "request"
    messages: Sequence[Message] = ()
    inputs: Sequence[str] = ()
    max_tokens: int | None = None


def _iso(at: float) -> str | None:
    return None if math.isinf(at) else datetime.fromtimestamp(at, UTC).isoformat()


def budget_body(counter: Counter, used: int, now: float) -> dict[str, Any]:
    """How a budget appears in refusals, stream cuts and ``GET /v1/budgets``."""
    budget = counter.budget
    remaining = max(budget.limit - used, 0)
    return {
        "id": budget.id,
        "scope": budget.scope,
        "subject": counter.subject,
        "window": budget.window,
        "unit": "usd" if budget.unit == "cost" else "tokens",
        "limit": from_amount(budget.unit, budget.limit),
        "used": from_amount(budget.unit, used),
        "remaining": from_amount(budget.unit, remaining),
        "reset": _iso(counter.reset_at),
        "shadow": budget.shadow,
    }


@dataclass
class Meter:
    """One admitted call: counts its stream, settles exactly once."""

    governor: Governor
    call: CallInfo
    accounting: Accounting
    reservation_id: str
    admitted_at: float
    counters: list[Counter]
    allowance: int
    binding: Counter | None
    prompt_tokens: int
    rates: Rates
    tpm_rules: list[RateCharge] = field(default_factory=list)
    completion_tokens: int = 0
    settled: bool = False
    _last_chunk: int = 1
    _refreshed: float = field(default_factory=time.monotonic)
    _refreshing: asyncio.Task[None] | None = None

    def on_delta(self, text: str) -> dict[str, Any] | None:
        """Count a streamed piece; a dict (the ``lanewise`` error object) means stop now.

        Stops when the next chunk, as large as this one, would go past the allowance:
        the stream ends within the budget instead of one chunk after it.
        """
        if not text:
            return None
        tokens = self.governor.counter(self.call.model).count(text)
        self.completion_tokens += tokens
        self._keep_alive()
        self._last_chunk = max(tokens, 1)
        if self.completion_tokens + self._last_chunk <= self.allowance:
            return None
        if self.binding is None and self.call.max_tokens is not None:
            return None  # the caller's own max_tokens: the model stops there by itself
        return self.stop_reason()

    def _keep_alive(self) -> None:
        # A stream may outlive the hold's TTL (a slow reader): push the expiry back at
        # a third of the TTL so a live call never loses its reservation.
        now = time.monotonic()
        if now - self._refreshed < self.accounting.ttl_s / 3 or self._refreshing is not None:
            return
        self._refreshed = now
        task = asyncio.get_running_loop().create_task(
            self.accounting.extend(self.reservation_id, self.counters)
        )
        self._refreshing = task
        task.add_done_callback(self._refresh_done)

    def _refresh_done(self, _: asyncio.Task[None]) -> None:
        self._refreshing = None

    def stop_reason(self) -> dict[str, Any]:
        if self.binding is None:
            return {
                "type": "max-tokens",
                "detail": f"the completion reached its allowance of {self.allowance} tokens",
                "allowance": self.allowance,
            }
        body = budget_body(self.binding, self.binding.budget.limit, time.time())
        return {
            "type": "budget-exceeded",
            "detail": f"the {self.binding.budget.describe()} ran out during this completion; "
            "raise the budget or wait for its window to reset",
            "budget": body,
        }

    async def settle(self, status: str, usage: Usage, duration_s: float) -> Charge | None:
        """Charge the call (once); returns the charge, None when it was settled before."""
        if self.settled:
            return None
        self.settled = True
        prompt = usage.prompt_tokens or (self.prompt_tokens if status == "ok" else 0)
        completion = usage.completion_tokens or self.completion_tokens
        if status not in ("ok", "cancelled", "timeout") and not usage.total_tokens:
            prompt = completion = 0
        gpu_s = duration_s if self.rates.gpu_per_s else 0.0
        cost = self.rates.cost(prompt, completion, gpu_s)
        p = self.call.principal
        charge = Charge(
            # A reservation settles once: its id names the charge too (one random id a call).
            id=self.reservation_id,
            ts=self.admitted_at,
            settled_at=time.time(),
            request_id=self.call.request_id,
            tenant=p.tenant,
            user=p.user,
            key_id=p.key_id,
            workflow=p.workflow,
            model=self.call.model,
            operation=self.call.operation,
            purpose=self.call.purpose,
            status=status,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_nano=cost,
            gpu_s=gpu_s,
        )
        amounts = tuple(
            (c, cost if c.budget.unit == "cost" else prompt + completion) for c in self.counters
        )
        extra = tuple(
            RateCharge(r.key, r.limit, completion + max(prompt - self.prompt_tokens, 0), r.shadow)
            for r in self.tpm_rules
        )
        settlement = Settlement(
            reservation_id=self.reservation_id,
            charge_id=charge.id,
            amounts=amounts,
            rate_extra=extra,
        )
        self.accounting.settle(charge, settlement)
        governor = self.governor
        if self.accounting is not governor.accounting:
            # Admitted on local limits during an outage: the shared counters must learn
            # of it too once they are back (the charge id keeps it from counting twice).
            governor.accounting.settle(charge, settlement)
        elif governor.on_local_limits and governor.fallback is not None:
            # Admitted before the outage, done during it: the local limits count it too.
            governor.fallback.settle(charge, settlement)
        return charge

    @property
    def cost_usd(self) -> float:
        return self.rates.cost(self.prompt_tokens, self.completion_tokens, 0.0) / 1e9


class Governor:
    def __init__(
        self,
        settings: GovernanceSettings,
        catalogue: Catalogue,
        accounting: Accounting,
        fallback: Accounting | None = None,
    ) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.accounting = accounting
        self.fallback = fallback
        self._outage_logged = 0.0
        self._seeded: set[str] = set()
        self.on_local_limits = False
        # Per model, from settings that do not change while the process runs: a scan of
        # the price list and the rate arithmetic once, not on every call.
        self._counters: dict[str, TokenCounter] = {}
        self._rates: dict[str, Rates] = {}

    def counter(self, model: str) -> TokenCounter:
        found = self._counters.get(model)
        if found is None:
            price = self.settings.price(model)
            found = self._counters[model] = counter_for(price.tokenizer if price else "auto")
        return found

    def rates(self, model: str) -> Rates:
        found = self._rates.get(model)
        if found is None:
            found = self._rates[model] = rates_for(self.settings, model)
        return found

    def count_prompt(self, call: CallInfo) -> int:
        counter = self.counter(call.model)
        if call.operation == "embedding":
            return sum(counter.count_many(list(call.inputs)))
        return prompt_tokens(counter, call.messages)

    async def admit(self, call: CallInfo) -> Meter:
        now = time.time()
        budgets = await self.catalogue.fresh()
        if any(b.id not in self._seeded for b in budgets):
            await self._seed_new(budgets)
        rates = self.rates(call.model)
        counters = [
            c
            for c in applicable(budgets, call.principal, call.request_id, now)
            if not (c.budget.unit == "cost" and rates.free)
        ]
        prompt = self.count_prompt(call)
        if call.operation == "embedding":
            lo = hi = 0
        elif call.max_tokens is not None:
            lo = hi = call.max_tokens
        else:
            lo, hi = 1, self.settings.default_max_tokens
        holds = [
            Hold(counter=c, base=prompt, rate=1)
            if c.budget.unit == "tokens"
            else Hold(
                counter=c,
                base=prompt * rates.input_per_token + rates.gpu_base,
                rate=rates.output_per_token,
            )
            for c in counters
        ]
        rate_charges: list[RateCharge] = []
        for rule in self.catalogue.rate_rules:
            requests = 1 if call.purpose == "request" else 0
            rate_charges += rule.charges(call.principal, requests=requests, tokens=prompt)
        rid = os.urandom(16).hex()
        accounting = self.accounting
        try:
            admission = await accounting.admit(
                rid, rate_charges, holds, min_allowance=lo, max_allowance=hi, now=now
            )
        except StoreUnavailable as exc:
            accounting = self._on_outage(counters, exc)
            admission = await accounting.admit(
                rid, rate_charges, holds, min_allowance=lo, max_allowance=hi, now=now
            )
        else:
            if self.on_local_limits:
                # The shared store is back: the next outage starts its local limits from
                # the ledger again rather than from what this replica saw last time.
                self.on_local_limits = False
                if self.fallback is not None and isinstance(self.fallback.store, MemoryStore):
                    self.fallback.store.wipe()
        waited = 0.0
        while self._held_out(admission, holds, lo) and waited < self.settings.contention_wait_s:
            # Only holds of calls in flight keep this call out; most settle for less than
            # they hold, so wait for them rather than refuse a call that will fit.
            await asyncio.sleep(CONTENTION_POLL_S)
            waited += CONTENTION_POLL_S
            rid = os.urandom(16).hex()
            now = time.time()
            admission = await accounting.admit(
                rid, rate_charges, holds, min_allowance=lo, max_allowance=hi, now=now
            )
        self._refuse_if_needed(admission, rate_charges, counters, prompt, lo, now)
        for i in admission.shadow_hits:
            log.warning(
                "governance (shadow): %s would have refused request %s",
                counters[i].budget.describe(),
                call.request_id,
            )
        binding = (
            counters[admission.index] if admission.index >= 0 and call.max_tokens is None else None
        )
        return Meter(
            governor=self,
            call=call,
            accounting=accounting,
            reservation_id=rid,
            admitted_at=now,
            counters=counters,
            allowance=admission.allowance,
            binding=binding if admission.allowance < hi else None,
            prompt_tokens=prompt,
            rates=rates,
            tpm_rules=[r for r in rate_charges if ":tpm:" in r.key],
        )

    @staticmethod
    def _held_out(admission: Admission, holds: Sequence[Hold], lo: int) -> bool:
        if admission.status != "budget":
            return False
        hold = holds[admission.index]
        return admission.settled + hold.base + lo * hold.rate <= hold.counter.budget.limit

    async def _seed_new(self, budgets: Sequence[Budget]) -> None:
        """A budget this replica has not used yet starts from its window's spend so far
        (set by the CLI or another replica); counters that exist already win."""
        for budget in budgets:
            if budget.id in self._seeded:
                continue
            try:
                await self.accounting.seed(budget)
            except StoreUnavailable:
                return
            self._seeded.add(budget.id)

    def _on_outage(self, counters: list[Counter], exc: StoreUnavailable) -> Accounting:
        closed = [
            c
            for c in counters
            if not c.budget.shadow
            and (
                self.settings.on_outage_cost
                if c.budget.unit == "cost"
                else self.settings.on_outage_tokens
            )
            == "closed"
        ]
        now = time.monotonic()
        if now - self._outage_logged > 5.0:
            self._outage_logged = now
            log.error(
                "governance: budget store unreachable (%s); %s",
                exc,
                "refusing calls under fail-closed budgets" if closed else "using local limits",
            )
        if not closed and self.fallback is not None:
            self.on_local_limits = True
        if closed or self.fallback is None:
            what = closed[0].budget.describe() if closed else "budgets"
            refusals.count(closed[0].budget.scope if closed else "", "store_unavailable")
            raise BudgetStoreUnavailable(
                f"the budget store is unreachable and the {what} fails closed; retry shortly",
                retry_after_s=1.0,
            ) from exc
        return self.fallback

    def _refuse_if_needed(
        self,
        admission: Admission,
        rate_charges: list[RateCharge],
        counters: list[Counter],
        prompt: int,
        lo: int,
        now: float,
    ) -> None:
        if admission.status == "rate":
            charge = rate_charges[admission.index]
            refusals.count(charge.scope, "rate_limit")
            if charge.cost > charge.limit:
                raise RateLimited(
                    f"this call needs {charge.cost} units, more than the {charge.label} limit "
                    f"of {charge.limit} per minute allows; send a shorter prompt",
                    limit=charge.label,
                    window="minute",
                )
            raise RateLimited(
                f"the {charge.label} limit ({charge.limit} per minute) is used up; "
                f"retry after {admission.retry_after_s:.2f}s",
                retry_after_s=admission.retry_after_s,
                limit=charge.label,
                window="minute",
            )
        if admission.status == "budget":
            counter = counters[admission.index]
            refusals.count(counter.budget.scope, "budget")
            body = budget_body(counter, admission.used, now)
            retry = None if math.isinf(counter.reset_at) else max(counter.reset_at - now, 1.0)
            needed = "the prompt" if lo <= 1 else f"the prompt plus max_tokens = {lo}"
            raise BudgetExceeded(
                f"the {counter.budget.describe()} has {body['remaining']:g} {body['unit']} "
                f"left, not enough for {needed} ({prompt} prompt tokens); "
                + (
                    "wait for the window to reset or ask for a larger budget"
                    if retry
                    else "ask for a larger budget"
                ),
                retry_after_s=retry,
                budget=body,
                **{k: body[k] for k in ("scope", "window", "limit", "used", "remaining", "reset")},
            )
