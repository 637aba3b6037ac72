"""Slow down key guessing: failed authentications counted per client address.

Each address may fail ``limit`` times per ``window_s``; past that every request
from it gets 429 with ``Retry-After`` until the window ends, before any key is
checked. The table is bounded (least recently seen addresses are forgotten
first), so a flood of spoofed or distinct addresses cannot grow memory; it lives
in the worker process, so with several workers each counts its own share.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from lanewise.core.errors import LimitExceeded

MAX_ADDRESSES = 10_000


class AuthFailureThrottle:
    def __init__(self, *, limit: int, window_s: float, max_addresses: int = MAX_ADDRESSES) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_addresses = max_addresses
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

    def failed(self, address: str) -> None:
        now = time.monotonic()
        started, count = self._failures.pop(address, (now, 0))
        if started + self.window_s <= now:
            started, count = now, 0
        self._failures[address] = (started, count + 1)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
