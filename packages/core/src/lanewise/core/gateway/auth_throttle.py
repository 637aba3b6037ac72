"""Slow down key guessing: failed authentications counted per client address.

Each address may fail ``limit`` times per ``window_s``; past that every request
from it gets 429 with ``Retry-After`` until the window ends, before any key is
checked. The table is bounded (least recently seen addresses are forgotten
first), so a flood of spoofed or distinct addresses cannot grow memory.

With ``redis_url`` configured, failures are also counted in Redis, shared by
every worker and replica: each failure is one atomic increment (failures only,
never on the hot path of a good request), and the worker that records it learns
the shared count. So an address is blocked everywhere after at most ``limit``
plus one failure per other worker, instead of ``limit`` per worker. A Redis
outage falls back to the local count, logged once.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from typing import Any

from lanewise.core.aio import LoopLocal
from lanewise.core.errors import LimitExceeded

MAX_ADDRESSES = 10_000
log = logging.getLogger("lanewise.gateway")

# INCR, and start the window on the first failure only.
_INCREMENT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class SharedFailureCounter:
    """Failed authentications per address in Redis, for every worker and replica."""

    def __init__(self, url: str, *, prefix: str = "lanewise:auth-failures:") -> None:
        self.url, self.prefix = url, prefix
        self._client: LoopLocal[Any] = LoopLocal(self._connect)
        self._warned = False

    def _connect(self) -> Any:
        import redis.asyncio as redis

        return redis.Redis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0)

    async def increment(self, address: str, window_s: float) -> int | None:
        """The address's failures in the shared window, or None when Redis is unreachable."""
        from redis.exceptions import RedisError

        try:
            count = await self._client.get().eval(
                _INCREMENT, 1, self.prefix + address, str(math.ceil(window_s * 1000))
            )
        except (RedisError, OSError) as exc:
            if not self._warned:
                self._warned = True
                log.warning("auth-failure counts are per worker: redis unreachable (%s)", exc)
            return None
        self._warned = False
        return int(count)

    async def aclose(self) -> None:
        client = self._client.take()
        if client is not None:
            await client.aclose()


class AuthFailureThrottle:
    def __init__(
        self,
        *,
        limit: int,
        window_s: float,
        max_addresses: int = MAX_ADDRESSES,
        shared: SharedFailureCounter | None = None,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_addresses = max_addresses
        self.shared = shared
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def check(self, address: str) -> None:
        """Raise 429 when ``address`` has used up its failures in this window."""
        entry = self._failures.get(address)
        if entry is None:
            return
        started, count = entry
        left = started + self.window_s - time.monotonic()
        if left <= 0:
            del self._failures[address]
            return
        if count >= self.limit:
            raise LimitExceeded(
                f"too many failed authentications from this address; retry after {left:.0f}s "
                "with a valid API key",
                retry_after_s=left,
                limit="gateway.auth_failure_limit",
            )

    async def failed(self, address: str) -> None:
        now = time.monotonic()
        started, count = self._failures.pop(address, (now, 0))
        if started + self.window_s <= now:
            started, count = now, 0
        count += 1
        if self.shared is not None:
            shared = await self.shared.increment(address, self.window_s)
            count = max(count, shared or 0)
        self._failures[address] = (started, count)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()
