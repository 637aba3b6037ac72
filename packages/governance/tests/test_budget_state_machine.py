"""Reserve / settle / expire / lose-and-rebuild against a reference model.

The same machine drives the in-process store and a real Redis. The reference
is deliberately naive: it tries every allowance from the largest down and
keeps plain dicts of holds and settled amounts.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)
from lanewise.core.types import Principal
from lanewise.governance import tables
from lanewise.governance.accounting import Accounting
from lanewise.governance.budgets import Budget, applicable
from lanewise.governance.ledger import Charge, Ledger
from lanewise.governance.redis_store import RedisStore
from lanewise.governance.store import Hold, MemoryStore, Settlement
from sqlalchemy import delete

TTL = 300.0
START = 1_800_000_000.0  # a fixed instant; the machine moves its own clock
PRINCIPALS = [
    Principal(tenant="acme", user="ann", key_id="k1"),
    Principal(tenant="acme", user="bob", key_id="k2"),
]


@dataclass
class Reservation:
    rid: str
    principal: Principal
    now: float
    base: int
    allowance: int
    held: dict[str, int]
    expiry: float
    counters: list[Any] = field(default_factory=list)


class BudgetMachine(RuleBasedStateMachine):
    store_kind = "memory"
    redis_url = ""
    ledger_url = ""

    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = START
        self.ids = itertools.count()
        self.settled: dict[str, int] = {}
        self.live: dict[str, Reservation] = {}
        self.lost: dict[str, int] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize(
        tenant_hour=st.integers(20, 400),
        key_lifetime=st.integers(20, 400),
        shadow_minute=st.integers(1, 50),
    )
    def setup(self, tenant_hour: int, key_lifetime: int, shadow_minute: int) -> None:
        self.budgets = [
            Budget(scope="tenant", subject="acme", window="hour", unit="tokens", limit=tenant_hour),
            Budget(scope="key", subject="*", window="lifetime", unit="tokens", limit=key_lifetime),
            Budget(
                scope="user",
                subject="*",
                window="minute",
                unit="tokens",
                limit=shadow_minute,
                shadow=True,
            ),
        ]
        self.ledger = Ledger.open(self.ledger_url)
        with self.ledger.engine.begin() as connection:
            connection.execute(delete(tables.charges))
        if self.store_kind == "redis":
            self.store: Any = RedisStore(self.redis_url, prefix=f"t{uuid.uuid4().hex[:6]}:")
            self.run(self.store.redis.flushall())
        else:
            self.store = MemoryStore()
        self.accounting = Accounting(
            self.store,
            self.ledger,
            budgets=lambda: self.budgets,
            reservation_ttl_s=TTL,
            clock=lambda: self.clock,
        )

    def teardown(self) -> None:
        if hasattr(self, "accounting"):
            self.run(self.accounting.aclose())
            self.ledger.close()
        self.loop.close()

    # -- the reference ----------------------------------------------------------
    def reserved(self, key: str) -> int:
        return sum(r.held.get(key, 0) for r in self.live.values() if r.expiry > self.clock)

    def expected_allowance(self, counters: list[Any], base: int, lo: int, hi: int) -> int | None:
        for allowance in range(hi, lo - 1, -1):
            if all(
                c.budget.shadow
                or self.settled.get(c.key, 0) + self.reserved(c.key) + base + allowance
                <= c.budget.limit
                for c in counters
            ):
                return allowance
        return None

    # -- rules -------------------------------------------------------------------
    @rule(
        target=reservations,
        who=st.sampled_from(PRINCIPALS),
        base=st.integers(0, 60),
        max_allowance=st.integers(1, 80),
        fixed=st.booleans(),
    )
    def reserve(self, who: Principal, base: int, max_allowance: int, fixed: bool) -> Any:
        rid = f"r{next(self.ids)}"
        counters = applicable(self.budgets, who, rid, self.clock)
        holds = [Hold(counter=c, base=base, rate=1) for c in counters]
        lo = max_allowance if fixed else 1
        expected = self.expected_allowance(counters, base, lo, max_allowance)
        admission = self.run(
            self.accounting.admit(rid, [], holds, min_allowance=lo, max_allowance=max_allowance)
        )
        if expected is None:
            assert admission.status == "budget"
            refused = counters[admission.index]
            assert not refused.budget.shadow
            # Nothing for the bundle: settle and keep_alive draw only reservations that
            # hold something (a refused one as None made most of their steps no-ops).
            return multiple()
        assert admission.status == "ok"
        assert admission.allowance == expected
        reservation = Reservation(
            rid=rid,
            principal=who,
            now=self.clock,
            base=base,
            allowance=expected,
            held={c.key: base + expected for c in counters},
            expiry=self.clock + TTL,
            counters=counters,
        )
        self.live[rid] = reservation
        return reservation

    @rule(
        reservation=consumes(reservations),
        prompt_share=st.floats(0, 1),
        completion_share=st.floats(0, 1),
    )
    def settle(
        self, reservation: Reservation, prompt_share: float, completion_share: float
    ) -> None:
        prompt = int(reservation.base * prompt_share)
        completion = int(reservation.allowance * completion_share)
        who = reservation.principal
        charge = Charge(
            id=uuid.uuid4().hex,
            ts=reservation.now,
            settled_at=self.clock,
            request_id=reservation.rid,
            tenant=who.tenant,
            user=who.user,
            key_id=who.key_id,
            workflow=None,
            model="m",
            operation="chat",
            purpose="request",
            status="ok",
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_nano=0,
        )
        settlement = Settlement(
            reservation_id=reservation.rid,
            charge_id=charge.id,
            amounts=tuple((c, prompt + completion) for c in reservation.counters),
        )

        async def settle_and_flush() -> None:
            self.accounting.settle(charge, settlement)
            await self.accounting.flush()

        self.run(settle_and_flush())
        live = self.live.pop(reservation.rid, None)
        for counter in reservation.counters:
            self.settled[counter.key] = self.settled.get(counter.key, 0) + prompt + completion
            if live is None or live.expiry <= self.clock:
                # Its hold was released (TTL) or forgotten (lost counters) while the call
                # went on: the only way past a limit. The gateway keeps the TTL above the
                # request deadline so that a live call cannot outlast its hold.
                self.lost[counter.key] = self.lost.get(counter.key, 0) + prompt + completion

    @rule(reservation=reservations)
    def keep_alive(self, reservation: Reservation) -> None:
        """A stream still running pushes its hold's expiry back."""
        self.run(self.accounting.extend(reservation.rid, reservation.counters))
        live = self.live.get(reservation.rid)
        if live is not None and live.expiry > self.clock:
            live.expiry = self.clock + TTL

    @rule(seconds=st.sampled_from([1.0, 30.0, TTL / 2, TTL + 1, 3600.0]))
    def advance(self, seconds: float) -> None:
        self.clock += seconds

    @rule()
    def lose_counters_and_rebuild(self) -> None:
        if self.store_kind == "redis":
            self.run(self.store.redis.flushall())
        else:
            self.store.wipe()
        self.live.clear()  # forgotten holds: settling them later counts as "lost"
        assert self.run(self.accounting.rebuild())
        assert not self.run(self.accounting.rebuild()), "a second rebuild must be a no-op"

    # -- invariants ----------------------------------------------------------------
    def current_counters(self) -> list[Any]:
        counters = {}
        for who in PRINCIPALS:
            for c in applicable(self.budgets, who, "", self.clock):
                counters[c.key] = c
        return list(counters.values())

    @invariant()
    def counters_match_the_reference(self) -> None:
        if not hasattr(self, "accounting"):
            return
        counters = self.current_counters()
        usage = self.run(self.accounting.usage(counters))
        for counter, (settled, reserved) in zip(counters, usage, strict=True):
            assert settled >= 0
            assert reserved >= 0
            assert settled == self.settled.get(counter.key, 0), counter.key
            assert reserved == self.reserved(counter.key), counter.key
            if not counter.budget.shadow:
                # Holds forgotten with the counters are the only way past a limit.
                assert settled + reserved <= counter.budget.limit + self.lost.get(counter.key, 0)

    @invariant()
    def ledger_equals_counters(self) -> None:
        if not hasattr(self, "accounting"):
            return
        for counter in self.current_counters():
            spent = self.ledger.spent(counter.budget, counter.subject, self.clock)
            assert spent == self.settled.get(counter.key, 0)


SETTINGS = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def memory_machine(tmp_path: Path) -> type[BudgetMachine]:
    return type("MemoryMachine", (BudgetMachine,), {"ledger_url": f"sqlite:///{tmp_path / 'l.db'}"})


def test_memory_store_keeps_budgets(tmp_path: Path) -> None:
    machine = memory_machine(tmp_path)
    machine.TestCase.settings = SETTINGS
    machine.TestCase().runTest()


def test_a_kept_alive_reservation_settles_and_every_count_follows(tmp_path: Path) -> None:
    """The machine's settle path, taken every time: in its 40 random examples a run
    settles anywhere from a handful of times to a hundred (one ``make test`` run, while
    refused reservations still entered the bundle as None, settled none), so no assertion
    about a random run can promise that this path was checked."""
    machine = memory_machine(tmp_path)()
    try:
        machine.setup(tenant_hour=400, key_lifetime=400, shadow_minute=50)
        held = machine.reserve(PRINCIPALS[0], base=30, max_allowance=50, fixed=False)
        assert isinstance(held, Reservation)
        assert held.allowance == 50
        machine.counters_match_the_reference()
        machine.advance(TTL / 2)
        machine.keep_alive(held)
        machine.advance(TTL / 2 + 1)  # past the first expiry: the hold was pushed back
        machine.counters_match_the_reference()
        assert machine.reserved(held.counters[0].key) == 80
        machine.settle(held, 1.0, 0.5)
        machine.counters_match_the_reference()
        machine.ledger_equals_counters()
        assert machine.settled == {counter.key: 30 + 25 for counter in held.counters}
        assert not machine.lost
        assert not machine.live
    finally:
        machine.teardown()


@pytest.mark.slow
def test_redis_store_keeps_budgets(tmp_path: Path, redis_server: Any) -> None:
    machine = type(
        "RedisMachine",
        (BudgetMachine,),
        {
            "store_kind": "redis",
            "redis_url": redis_server.url,
            "ledger_url": f"sqlite:///{tmp_path / 'l.db'}",
        },
    )
    machine.TestCase.settings = settings(SETTINGS, max_examples=25)
    machine.TestCase().runTest()
