"""The per-request Redis path: pre-packed EVALSHA on connections kept by this loop.

redis-py's pool does per-command bookkeeping that costs more CPU than the script
itself: a condition and a timeout per checkout, a readability probe (a syscall),
connection metrics, a task per send (``wait_for``). Admission runs on every model
call, so it uses connections of its own: taken and returned without a lock, one
command (or one pipelined batch) written in one ``writelines``, the replies read
with a timeout (and parsed by hiredis, a dependency for that reason). redis-py still
opens them (URL, auth, TLS, database, RESP).

A connection that fails or is cancelled mid-command is closed, never reused, so
no later command can read an earlier command's reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

Arg = str | int | bytes


def pack(*args: Arg) -> bytes:
    """One command in RESP: what redis-py's packer writes for str/int/bytes arguments."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class ScriptLane:
    """Connections for pre-packed commands, at most ``max_connections`` at once: a burst
    of calls waits for one instead of failing (a busy lane is not an outage)."""

    def __init__(self, pool: aioredis.ConnectionPool, *, max_connections: int, timeout_s: float):
        # The timeout is applied here (one asyncio.timeout per command or batch) instead
        # of by redis-py, whose send would otherwise wrap each write in a task.
        self._kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        self._connection_class = pool.connection_class
        self._max = max_connections
        self._timeout_s = timeout_s
        self._idle: list[AbstractConnection] = []
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bind(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._slots is None:
            # Connections belong to the loop that opened them: a new loop starts afresh.
            self._loop, self._slots, self._idle = loop, asyncio.Semaphore(self._max), []
        return self._slots

    async def execute(self, packed: bytes, replies: int = 1, *, fresh: bool = False) -> list[Any]:
        """Send ``packed`` (``replies`` commands) and read every reply.

        Redis errors come back as :class:`ResponseError` values, not raised, so a batch
        is always read to its end; connection errors and timeouts are raised. ``fresh``
        opens a new connection rather than trusting a kept one.
        """
        async with self._bind():
            if self._idle and not fresh:
                connection = self._idle.pop()
            else:
                connection = self._connection_class(**self._kwargs)
            try:
                async with asyncio.timeout(self._timeout_s):
                    if not connection.is_connected:
                        await connection.connect()  # type: ignore[no-untyped-call]
                    await connection.send_packed_command(packed, check_health=False)
                    out = [await self._read(connection) for _ in range(replies)]
            except BaseException:
                await connection.disconnect(nowait=True)
                raise
            self._idle.append(connection)
            return out

    @staticmethod
    async def _read(connection: AbstractConnection) -> Any:
        try:
            return await connection.read_response()
        except ResponseError as exc:
            return exc

    async def drop_idle(self) -> None:
        """Close the kept connections (after an outage they may all point at a dead server)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect(nowait=True)


def evalsha(sha: str, keys: Sequence[Arg], args: Sequence[Arg]) -> bytes:
    return pack("EVALSHA", sha, len(keys), *keys, *args)
