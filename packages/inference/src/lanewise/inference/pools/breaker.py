"""Per-replica circuit breaker: closed -> open -> half-open -> closed.

``failure_threshold`` consecutive failures open it; after ``reset_after_s`` it
lets ``half_open_max`` probe requests through; a probe's success closes it, a
probe's failure opens it again for another ``reset_after_s``. The clock is
injectable so tests step time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        reset_after_s: float = 5.0,
        half_open_max: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or half_open_max < 1 or reset_after_s < 0:
            raise ValueError("failure_threshold and half_open_max must be >= 1, reset_after_s >= 0")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.half_open_max = half_open_max
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0

    @property
    def state(self) -> State:
        if self._state == "open" and self._clock() - self._opened_at >= self.reset_after_s:
            self._state = "half-open"
            self._probes = 0
        return self._state

    def peek(self) -> State:
        """The state now, changing nothing (for a reader on another thread, like telemetry)."""
        state = self._state
        if state == "open" and self._clock() - self._opened_at >= self.reset_after_s:
            return "half-open"
        return state

    def available(self) -> bool:
        """Whether :meth:`allow` would admit a request now (does not reserve a probe)."""
        state = self.state
        return state == "closed" or (state == "half-open" and self._probes < self.half_open_max)

    def allow(self) -> bool:
        """Admit a request; in half-open this takes one of the probe slots."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and self._probes < self.half_open_max:
            self._probes += 1
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        if self.state == "half-open":
            self._state = "closed"
            self._probes = 0

    def record_failure(self) -> None:
        state = self.state
        self._failures += 1
        if state == "half-open" or (state == "closed" and self._failures >= self.failure_threshold):
            self._trip()

    def release(self) -> None:
        """A request that ended without a verdict (cancelled, client error) frees its probe."""
        if self.state == "half-open" and self._probes > 0:
            self._probes -= 1

    def retry_after_s(self) -> float:
        """Seconds until this breaker lets a probe through (0 when it already would)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.reset_after_s - (self._clock() - self._opened_at))

    def _trip(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._probes = 0
        self._failures = 0
