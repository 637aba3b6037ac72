"""Asyncio helpers shared by the lanes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """One value per event loop, made lazily in the loop that uses it.

    A grpc.aio channel or an ``asyncio.Semaphore`` belongs to the loop that
    created it; a component built in one loop (start-up) and used in another
    (the gateway's, a test's) must make its own there.
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: T | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        if self._value is None or self._loop is not loop:
            self._value = self._make()
            self._loop = loop
        return self._value

    def take(self) -> T | None:
        """The current value (for closing), forgetting it: the next ``get`` makes a new one."""
        value, self._value = self._value, None
        return value
