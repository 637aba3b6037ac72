"""Hot counters: the contract both stores keep, and the in-process store.

One ``admit`` decides a model call atomically: every GCRA rate limit, then the
largest completion allowance that fits every budget, then the reservation of
``base + allowance * rate`` on each counter. ``settle`` releases the hold and
adds the actual amount, once per charge id. A hold that is never settled (the
gateway died) expires after its TTL. After the store lost its data, ``admit``
and ``settle`` answer ``rebuild`` until the counters are rebuilt from the
ledger, so nothing is counted twice or lost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from lanewise.governance.budgets import Counter

RATE_WINDOW_MS = 60_000.0
"""GCRA window: RPM and TPM allow a burst of one minute's worth."""


class StoreUnavailable(Exception):
    """The shared store (Redis) cannot be reached."""


class NeedsRebuild(Exception):
    """The store lost its counters; rebuild them from the ledger and ask again."""


@dataclass(frozen=True, slots=True)
class Hold:
    """What one counter is asked to hold: ``base + allowance * rate``."""

    counter: Counter
    base: int
    rate: int = 0


@dataclass(frozen=True, slots=True)
class RateCharge:
    """One GCRA decision: ``cost`` units against ``limit`` per minute."""

    key: str
    limit: int
    cost: int
    shadow: bool = False
    label: str = ""
    scope: str = ""
    """The rule's scope (``key``, ``user``, ``tenant``): what a refusal is counted under."""

    @property
    def period_ms(self) -> float:
        return RATE_WINDOW_MS / self.limit


@dataclass(frozen=True, slots=True)
class Admission:
    status: Literal["ok", "rate", "budget", "rebuild"]
    allowance: int = 0
    held: tuple[int, ...] = ()
    index: int = -1
    """Refused: the rate charge or hold that refused; ok: the hold that bound the allowance."""
    used: int = 0
    """Refused by a budget: its settled plus reserved amount."""
    settled: int = 0
    """Refused by a budget: its settled amount (the rest are holds of calls in flight)."""
    retry_after_s: float = 0.0
    shadow_hits: tuple[int, ...] = ()
    """Shadow holds that would have refused (indexes into the holds)."""


@dataclass(frozen=True, slots=True)
class Settlement:
    reservation_id: str
    charge_id: str
    amounts: tuple[tuple[Counter, int], ...]
    rate_extra: tuple[RateCharge, ...] = ()
    """Units learnt after the call (completion tokens for TPM), added without a check."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters as the ledger says they are: ``key -> (settled, expire_at)``."""

    counters: dict[str, tuple[int, float]]
    charge_ids: tuple[str, ...]
    """Recently settled charges already in ``counters`` (a late settle must skip them)."""
    marker_ttl_s: float


class CounterStore(Protocol):
    async def admit(
        self,
        reservation_id: str,
        rates: Sequence[RateCharge],
        holds: Sequence[Hold],
        *,
        min_allowance: int,
        max_allowance: int,
        now: float,
        ttl_s: float,
    ) -> Admission: ...

    async def settle(self, settlements: Sequence[Settlement], *, now: float) -> bool:
        """Apply the settlements; False (nothing applied) when a rebuild must come first."""
        ...

    async def usage(self, counters: Sequence[Counter], *, now: float) -> list[tuple[int, int]]:
        """``(settled, reserved)`` of each counter (unexpired holds only)."""
        ...

    async def needs_rebuild(self) -> bool: ...

    async def rebuild(self, snapshot: Snapshot, *, now: float) -> bool:
        """Load the snapshot unless another replica already did; True when this one did."""
        ...

    async def seed(self, snapshot: Snapshot) -> None:
        """Create the counters of a new budget from the ledger; existing counters win."""
        ...

    async def extend(
        self, reservation_id: str, counters: Sequence[Counter], *, now: float, ttl_s: float
    ) -> int:
        """Keep a live hold for another ``ttl_s``; returns how many holds were still there."""
        ...

    async def aclose(self) -> None: ...


def gcra_verdict(tat_ms: float, now_ms: float, charge: RateCharge) -> tuple[float, float]:
    """``(new_tat, retry_after_ms)``; retry_after 0 means allowed."""
    new_tat = max(tat_ms, now_ms) + charge.cost * charge.period_ms
    excess = new_tat - now_ms - RATE_WINDOW_MS
    return new_tat, max(excess, 0.0)


def fit_allowance(
    holds: Sequence[Hold], state: Sequence[tuple[int, int]], max_allowance: int
) -> tuple[int, int]:
    """The largest allowance ≤ max that every non-shadow hold fits, and the binding hold.

    Returns ``(allowance, index)``; allowance < 0 when even the base does not fit.
    """
    allowance, index = max_allowance, -1
    for i, (hold, (settled, reserved)) in enumerate(zip(holds, state, strict=True)):
        if hold.counter.budget.shadow:
            continue
        room = hold.counter.budget.limit - settled - reserved - hold.base
        fits = -1 if room < 0 else (room // hold.rate if hold.rate > 0 else max_allowance)
        if fits < allowance:
            allowance, index = fits, i
    return allowance, index


@dataclass
class _CounterState:
    settled: int = 0
    reserved: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)
    expire_at: float = math.inf

    def purge(self, now: float) -> None:
        for rid, (amount, expiry) in list(self.holds.items()):
            if expiry <= now:
                del self.holds[rid]
                self.reserved -= amount


class MemoryStore:
    """In-process counters with the Redis store's semantics (the embedded default).

    Every method runs without awaiting, so on one event loop each is atomic.
    """

    def __init__(self, *, marker_ttl_s: float = 600.0) -> None:
        self.marker_ttl_s = marker_ttl_s
        self.wipe()

    def wipe(self) -> None:
        """Lose every counter, as a restarted process does."""
        self._counters: dict[str, _CounterState] = {}
        self._tats: dict[str, float] = {}
        self._markers: dict[str, float] = {}
        self._ready = False

    def _counter(self, counter: Counter, now: float) -> _CounterState:
        state = self._counters.get(counter.key)
        if state is None or state.expire_at <= now:
            state = self._counters[counter.key] = _CounterState(expire_at=counter.expire_at)
        state.purge(now)
        return state

    async def admit(
        self,
        reservation_id: str,
        rates: Sequence[RateCharge],
        holds: Sequence[Hold],
        *,
        min_allowance: int,
        max_allowance: int,
        now: float,
        ttl_s: float,
    ) -> Admission:
        if not self._ready:
            return Admission(status="rebuild")
        now_ms = now * 1000.0
        new_tats: list[float] = []
        for i, charge in enumerate(rates):
            new_tat, retry_ms = gcra_verdict(self._tats.get(charge.key, 0.0), now_ms, charge)
            if retry_ms > 0 and not charge.shadow:
                return Admission(status="rate", index=i, retry_after_s=retry_ms / 1000.0)
            new_tats.append(new_tat)
        states = [self._counter(h.counter, now) for h in holds]
        usage = [(s.settled, s.reserved) for s in states]
        allowance, index = fit_allowance(holds, usage, max_allowance)
        if allowance < min_allowance:
            settled, reserved = usage[index]
            return Admission(status="budget", index=index, used=settled + reserved, settled=settled)
        held = tuple(h.base + allowance * h.rate for h in holds)
        shadow_hits = tuple(
            i
            for i, (h, (settled, reserved)) in enumerate(zip(holds, usage, strict=True))
            if h.counter.budget.shadow and settled + reserved + held[i] > h.counter.budget.limit
        )
        for charge, tat in zip(rates, new_tats, strict=True):
            self._tats[charge.key] = tat
        for state, amount in zip(states, held, strict=True):
            previous = state.holds.get(reservation_id, (0, 0.0))[0]
            state.holds[reservation_id] = (amount + previous, now + ttl_s)
            state.reserved += amount
        return Admission(
            status="ok", allowance=allowance, held=held, index=index, shadow_hits=shadow_hits
        )

    async def settle(self, settlements: Sequence[Settlement], *, now: float) -> bool:
        if not self._ready:
            return False
        for item in settlements:
            for counter, _ in item.amounts:
                state = self._counter(counter, now)
                amount, _expiry = state.holds.pop(item.reservation_id, (0, 0.0))
                state.reserved -= amount
            if self._markers.get(item.charge_id, 0.0) > now:
                continue
            self._markers[item.charge_id] = now + self.marker_ttl_s
            for counter, amount in item.amounts:
                self._counter(counter, now).settled += amount
            for charge in item.rate_extra:
                tat = max(self._tats.get(charge.key, 0.0), now * 1000.0)
                self._tats[charge.key] = tat + charge.cost * charge.period_ms
        if len(self._markers) > 100_000:
            self._markers = {k: v for k, v in self._markers.items() if v > now}
        return True

    async def usage(self, counters: Sequence[Counter], *, now: float) -> list[tuple[int, int]]:
        if not self._ready:
            raise NeedsRebuild
        result = []
        for counter in counters:
            state = self._counters.get(counter.key)
            if state is None or state.expire_at <= now:
                result.append((0, 0))
                continue
            state.purge(now)
            result.append((state.settled, state.reserved))
        return result

    async def needs_rebuild(self) -> bool:
        return not self._ready

    async def rebuild(self, snapshot: Snapshot, *, now: float) -> bool:
        if self._ready:
            return False
        for key, (settled, expire_at) in snapshot.counters.items():
            self._counters[key] = _CounterState(settled=settled, expire_at=expire_at)
        for charge_id in snapshot.charge_ids:
            self._markers[charge_id] = now + snapshot.marker_ttl_s
        self._ready = True
        return True

    async def extend(
        self, reservation_id: str, counters: Sequence[Counter], *, now: float, ttl_s: float
    ) -> int:
        extended = 0
        for counter in counters:
            state = self._counters.get(counter.key)
            if state is not None and reservation_id in state.holds:
                amount, expiry = state.holds[reservation_id]
                if expiry > now:
                    state.holds[reservation_id] = (amount, now + ttl_s)
                    extended += 1
        return extended

    async def seed(self, snapshot: Snapshot) -> None:
        for key, (settled, expire_at) in snapshot.counters.items():
            if key not in self._counters:
                self._counters[key] = _CounterState(settled=settled, expire_at=expire_at)

    async def aclose(self) -> None:
        return None
