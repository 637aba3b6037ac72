"""The lean Redis lane: the same bytes as redis-py, batches read to the end, and a
cancelled command never hands its reply to the next one."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from lanewise.governance.redis_wire import ScriptLane, evalsha, pack
from redis.asyncio.connection import Connection
from redis.exceptions import NoScriptError

ARGS = st.lists(
    st.one_of(st.text(), st.integers(min_value=-(2**63), max_value=2**63), st.binary()),
    max_size=12,
)


@given(st.sampled_from(["EVALSHA", "EXISTS", "ECHO"]), ARGS)
def test_pack_writes_what_redis_py_writes(command: str, args: list[str | int | bytes]) -> None:
    # Command names are single words here (redis-py would split one with a space).
    assert pack(command, *args) == b"".join(Connection().pack_command(command, *args))


def lane_for(url: str) -> tuple[aioredis.ConnectionPool, ScriptLane]:
    pool = aioredis.ConnectionPool.from_url(url)
    return pool, ScriptLane(pool, max_connections=4, timeout_s=2.0)


async def test_a_batch_is_read_to_its_end_with_errors_as_values(redis_server: Any) -> None:
    pool, lane = lane_for(redis_server.url)
    try:
        packed = pack("PING") + evalsha("0" * 40, ["k"], []) + pack("PING")
        first, missing, last = await lane.execute(packed, 3)
        assert (first, last) == (b"PONG", b"PONG")
        assert isinstance(missing, NoScriptError)
        # The connection went back clean: the next command reads its own reply.
        assert await lane.execute(pack("ECHO", "next")) == [b"next"]
    finally:
        await lane.drop_idle()
        await pool.disconnect()


async def test_a_cancelled_command_never_answers_the_next_one(redis_server: Any) -> None:
    pool, lane = lane_for(redis_server.url)
    try:
        blocked = asyncio.ensure_future(lane.execute(pack("BLPOP", "lane-test-empty", "1")))
        await asyncio.sleep(0.2)
        blocked.cancel()
        await asyncio.gather(blocked, return_exceptions=True)
        # BLPOP's nil reply arrives about now on the cancelled command's connection;
        # had that connection been kept, ECHO would read it instead of its own reply.
        await asyncio.sleep(1.0)
        for i in range(4):
            assert await lane.execute(pack("ECHO", f"reply {i}")) == [f"reply {i}".encode()]
    finally:
        await lane.drop_idle()
        await pool.disconnect()


async def test_kept_connections_broken_by_a_restart_are_retried_on_a_new_one(
    redis_server: Any, tmp_path: Any
) -> None:
    from lanewise.governance.redis_store import RedisStore

    store = RedisStore(redis_server.url)
    try:
        await asyncio.gather(*(store.needs_rebuild() for _ in range(8)))  # several kept
        redis_server.kill()
        redis_server.start()
        # Every kept connection is now dead; each call still gets an answer.
        assert await asyncio.gather(*(store.needs_rebuild() for _ in range(8))) == [True] * 8
    finally:
        await store.aclose()
