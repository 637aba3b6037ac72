"""Hot counters in Redis: each decision is one Lua script, one round trip.

Keys live under one prefix (``lw:`` by default): ``c:<counter>`` (hash: settled
``s``, reserved ``r``, one ``h:<reservation>`` per hold), ``x:<counter>`` (hold
expiries), ``g:<rate key>`` (GCRA theoretical arrival time), ``m:<charge>``
(charge already counted), ``ready`` (counters are loaded). Scripts touch keys
they compute from their arguments, so this targets one Redis (or a primary with
replicas), not Redis Cluster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from lanewise.governance.budgets import Counter
from lanewise.governance.redis_wire import ScriptLane, evalsha, pack
from lanewise.governance.store import (
    Admission,
    Hold,
    NeedsRebuild,
    RateCharge,
    Settlement,
    Snapshot,
    StoreUnavailable,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

_OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError)


def _lua(name: str) -> str:
    return resources.files("lanewise.governance").joinpath("lua", name).read_text()


def _ms(at: float) -> int:
    return -1 if math.isinf(at) else int(at * 1000)


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "lw:",
        marker_ttl_s: float = 600.0,
        timeout_s: float = 0.5,
        max_connections: int = 64,
    ) -> None:
        self.prefix = prefix
        self.marker_ttl_s = marker_ttl_s
        # The pool parses the URL and opens connections (auth, TLS, database); the lane
        # keeps them. Every command goes through the lane; the client is for tests.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s * 4,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        self.redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._lane = ScriptLane(pool, max_connections=max_connections, timeout_s=timeout_s)
        self._admit = self.redis.register_script(_lua("admit.lua"))
        self._settle = self.redis.register_script(_lua("settle.lua"))
        self._usage = self.redis.register_script(_lua("usage.lua"))
        self._rebuild = self.redis.register_script(_lua("rebuild.lua"))
        self._seed = self.redis.register_script(_lua("seed.lua"))
        self._extend = self.redis.register_script(_lua("extend.lua"))

    def _counter_keys(self, counter: Counter) -> list[str]:
        return [self.prefix + "c:" + counter.key, self.prefix + "x:" + counter.key]

    async def _run(self, packed: bytes, replies: int = 1) -> list[Any]:
        """Send ``packed`` on the lane; a kept connection that a Redis restart broke is
        retried once on a new one (the others kept may be as stale: dropped too)."""
        try:
            try:
                return await self._lane.execute(packed, replies)
            except _OUTAGE:
                await self._lane.drop_idle()
                return await self._lane.execute(packed, replies, fresh=True)
        except _OUTAGE as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def _script(self, script: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run ``script`` once per ``(keys, args)``, all in one round trip.

        Redis errors come back as values; a server that forgot the script (restarted)
        gets it again and the calls are sent once more (admissions refused for it wrote
        nothing; settlements are idempotent per reservation and charge id).
        """
        packed = b"".join(evalsha(script.sha, keys, args) for keys, args in calls)
        replies = await self._run(packed, len(calls))
        if any(isinstance(r, NoScriptError) for r in replies):
            await self._run(pack("SCRIPT", "LOAD", script.script))
            replies = await self._run(packed, len(calls))
        return replies

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        (reply,) = await self._script(script, [(keys, args)])
        if isinstance(reply, Exception):
            raise reply
        return reply

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
        keys = [self.prefix + "ready", *(self.prefix + "g:" + r.key for r in rates)]
        args: list[Any] = [
            repr(now * 1000.0),
            reservation_id,
            int(ttl_s * 1000),
            min_allowance,
            max_allowance,
            len(rates),
            len(holds),
        ]
        for rate in rates:
            args += [repr(rate.period_ms), rate.cost, int(rate.shadow)]
        for hold in holds:
            keys += self._counter_keys(hold.counter)
            budget = hold.counter.budget
            args += [budget.limit, hold.base, hold.rate, int(budget.shadow)]
            args.append(_ms(hold.counter.expire_at))
        raw = await self._call(self._admit, keys, args)
        reply = [x.decode() if isinstance(x, bytes) else x for x in raw]
        status = reply[0]
        if status == "rebuild":
            return Admission(status="rebuild")
        if status == "rate":
            retry_s = float(reply[2]) / 1000
            return Admission(status="rate", index=int(reply[1]), retry_after_s=retry_s)
        if status == "budget":
            return Admission(
                status="budget", index=int(reply[1]), used=int(reply[2]), settled=int(reply[3])
            )
        rest = reply[3:]
        return Admission(
            status="ok",
            allowance=int(reply[1]),
            index=int(reply[2]),
            held=tuple(int(x) for x in rest[0::2]),
            shadow_hits=tuple(i for i, hit in enumerate(rest[1::2]) if hit == "1"),
        )

    def _settle_call(self, item: Settlement, now: float) -> tuple[list[str], list[Any]]:
        keys = [self.prefix + "ready", self.prefix + "m:" + item.charge_id]
        keys += [self.prefix + "g:" + r.key for r in item.rate_extra]
        args: list[Any] = [
            repr(now * 1000.0),
            item.reservation_id,
            int(self.marker_ttl_s * 1000),
            len(item.rate_extra),
            len(item.amounts),
        ]
        for rate in item.rate_extra:
            args += [repr(rate.period_ms), rate.cost]
        for counter, amount in item.amounts:
            keys += self._counter_keys(counter)
            args += [amount, _ms(counter.expire_at)]
        return keys, args

    async def settle(self, settlements: Sequence[Settlement], *, now: float) -> bool:
        if not settlements:
            return True
        # One round trip for the whole batch.
        replies = await self._script(
            self._settle, [self._settle_call(item, now) for item in settlements]
        )
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return all(int(r) != 0 for r in replies)

    async def usage(self, counters: Sequence[Counter], *, now: float) -> list[tuple[int, int]]:
        keys = [self.prefix + "ready"]
        for counter in counters:
            keys += self._counter_keys(counter)
        reply = await self._call(self._usage, keys, [repr(now * 1000.0)])
        if reply[0] in (b"rebuild", "rebuild"):
            raise NeedsRebuild
        values = [int(x) for x in reply[1:]]
        return list(zip(values[0::2], values[1::2], strict=True))

    async def needs_rebuild(self) -> bool:
        (exists,) = await self._run(pack("EXISTS", self.prefix + "ready"))
        return not exists

    async def rebuild(self, snapshot: Snapshot, *, now: float) -> bool:
        args: list[Any] = [int(snapshot.marker_ttl_s * 1000), self.prefix, len(snapshot.counters)]
        for key, (settled, expire_at) in snapshot.counters.items():
            args += [key, settled, _ms(expire_at)]
        args += list(snapshot.charge_ids)
        return bool(await self._call(self._rebuild, [self.prefix + "ready"], args))

    async def extend(
        self, reservation_id: str, counters: Sequence[Counter], *, now: float, ttl_s: float
    ) -> int:
        keys = [k for counter in counters for k in self._counter_keys(counter)]
        if not keys:
            return 0
        expiry = int((now + ttl_s) * 1000)
        return int(await self._call(self._extend, keys, [reservation_id, repr(now * 1000), expiry]))

    async def seed(self, snapshot: Snapshot) -> None:
        args: list[Any] = [self.prefix]
        for key, (settled, expire_at) in snapshot.counters.items():
            args += [key, settled, _ms(expire_at)]
        await self._call(self._seed, [], args)

    async def aclose(self) -> None:
        await self._lane.drop_idle()
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()
