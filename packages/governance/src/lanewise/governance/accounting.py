"""Admission and settlement over the hot counters, with the ledger behind them.

``admit`` is one store call (one Redis round trip). ``settle`` only queues:
a background writer records each charge in the ledger first and then settles
the hot counters in one batch (one round trip per batch), so settlement costs
the request nothing and a charge the counters count is always in the ledger.
When the store lost its counters, the first caller that notices rebuilds them
from the ledger; when it is unreachable, settlements wait and are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lanewise.governance.budgets import Budget, Counter
from lanewise.governance.ledger import Charge, Ledger
from lanewise.governance.store import (
    Admission,
    CounterStore,
    Hold,
    NeedsRebuild,
    RateCharge,
    Settlement,
    StoreUnavailable,
)

log = logging.getLogger("lanewise.governance")


@dataclass(slots=True)
class _Pending:
    charge: Charge
    settlement: Settlement


class Accounting:
    def __init__(
        self,
        store: CounterStore,
        ledger: Ledger,
        *,
        budgets: Callable[[], Sequence[Budget]],
        reservation_ttl_s: float,
        clock: Callable[[], float] = time.time,
        linger_s: float = 0.02,
        shares_ledger_with: Accounting | None = None,
    ) -> None:
        self.linger_s = linger_s
        # Charges queued there must be in the ledger before a snapshot here is taken
        # (local limits at the start of an outage are seeded from the ledger).
        self.shares_ledger_with = shares_ledger_with
        self.store = store
        self.ledger = ledger
        self.budgets = budgets
        self.ttl_s = reservation_ttl_s
        self.clock = clock
        self._queue: list[_Pending] = []
        # In the ledger, not yet in the counters (the next batch, or a retry).
        self._recorded: list[_Pending] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._rebuild_lock = asyncio.Lock()
        self._record_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()

    # -- admission -------------------------------------------------------------
    async def admit(
        self,
        reservation_id: str,
        rates: Sequence[RateCharge],
        holds: Sequence[Hold],
        *,
        min_allowance: int,
        max_allowance: int,
        now: float | None = None,
    ) -> Admission:
        now = self.clock() if now is None else now
        for _attempt in range(3):
            admission = await self.store.admit(
                reservation_id,
                rates,
                holds,
                min_allowance=min_allowance,
                max_allowance=max_allowance,
                now=now,
                ttl_s=self.ttl_s,
            )
            if admission.status != "rebuild":
                return admission
            await self.rebuild(now=now)
        raise NeedsRebuild("the counters were lost again while being rebuilt")

    async def usage(
        self, counters: Sequence[Counter], now: float | None = None
    ) -> list[tuple[int, int]]:
        now = self.clock() if now is None else now
        try:
            return await self.store.usage(counters, now=now)
        except NeedsRebuild:
            await self.rebuild(now=now)
            return await self.store.usage(counters, now=now)

    async def rebuild(self, *, now: float | None = None) -> bool:
        """Reload the counters from the ledger unless they are loaded (here or elsewhere)."""
        async with self._rebuild_lock:
            if not await self.store.needs_rebuild():
                return False
            now = self.clock() if now is None else now
            # A charge settled here but still queued would be missing from the snapshot
            # and reach the counters only on the writer's next round: calls admitted in
            # between could spend it again.
            await self.record_queued()
            if self.shares_ledger_with is not None:
                await self.shares_ledger_with.record_queued()
            snapshot = await asyncio.to_thread(
                self.ledger.snapshot, list(self.budgets()), now=now, recent_s=2 * self.ttl_s
            )
            done = await self.store.rebuild(snapshot, now=now)
            if done:
                log.warning(
                    "governance: counters rebuilt from the ledger (%d counters)",
                    len(snapshot.counters),
                )
            return done

    async def extend(self, reservation_id: str, counters: Sequence[Counter]) -> None:
        """Keep the holds of a call that is still running (a long stream)."""
        try:
            await self.store.extend(reservation_id, counters, now=self.clock(), ttl_s=self.ttl_s)
        except StoreUnavailable as exc:
            log.error("governance: could not extend a hold (%s)", exc)

    async def seed(self, budget: Budget, now: float | None = None) -> None:
        """Start a budget set at run time from what its window has already spent."""
        now = self.clock() if now is None else now
        snapshot = await asyncio.to_thread(self.ledger.snapshot, [budget], now=now, recent_s=0.0)
        await self.store.seed(snapshot)

    # -- settlement --------------------------------------------------------------
    def settle(self, charge: Charge, settlement: Settlement) -> None:
        """Queue a settlement; the writer records it in the ledger, then in the counters."""
        self._queue.append(_Pending(charge, settlement))
        self._start_writer()
        self._wake.set()

    def _start_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            # Linger a little so one ledger transaction and one Redis round trip carry
            # the settlements of many calls; holds stay reserved meanwhile (safe side).
            await asyncio.sleep(self.linger_s)
            self._wake.clear()
            try:
                await self._write_once()
            except Exception:
                log.exception("governance: settlement failed; retrying")
                await asyncio.sleep(0.5)
                self._wake.set()
            if self._recorded:
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _write_once(self) -> None:
        async with self._write_lock:
            await self._write_batch()

    async def record_queued(self) -> None:
        """Put every charge queued so far in the ledger (its counters follow later)."""
        async with self._record_lock:
            batch, self._queue = self._queue, []
            if batch:
                try:
                    await asyncio.to_thread(self.ledger.record, [p.charge for p in batch])
                except BaseException:
                    self._queue = batch + self._queue  # kept for the next round
                    raise
                self._recorded += batch

    async def _write_batch(self) -> None:
        await self.record_queued()
        batch, self._recorded = self._recorded, []
        if not batch:
            return
        now = self.clock()
        try:
            applied = await self.store.settle([p.settlement for p in batch], now=now)
            if not applied:
                await self.rebuild(now=now)
                applied = await self.store.settle([p.settlement for p in batch], now=now)
            if not applied:
                raise NeedsRebuild("counters lost twice during one settlement")
        except Exception as exc:
            # The charges are in the ledger; the counters get them when the store is back,
            # or from the next rebuild once the markers that dedupe them would have expired.
            keep = [p for p in batch if now - p.charge.settled_at < 2 * self.ttl_s]
            if len(keep) < len(batch):
                log.error(
                    "governance: %d settlements left to the next rebuild", len(batch) - len(keep)
                )
            self._recorded = keep + self._recorded
            log.error("governance: counters unreachable while settling (%s); will retry", exc)

    async def flush(self) -> None:
        """Write everything queued so far (tests, shutdown)."""
        await self._write_once()

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        try:
            await self._write_once()
        finally:
            await self.store.aclose()
