"""Server-sent events plumbing shared by the OpenAI-compatible streaming routes.

Keep-alive comments need the stream to wake up when no chunk has arrived for a
while. Racing ``anext()`` against a timer would either create a task per
token or cancel the generator mid-step, so one pump task per stream reads the
backend into a one-slot queue and the response waits on the queue with a
timer armed only when it is empty. When the client goes away Litestar cancels
the response; the ``finally`` below cancels the pump at once, which raises
``CancelledError`` inside the backend's stream, so the upstream generation
stops instead of running on for nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")
KEEPALIVE_COMMENT = b": keep-alive\n\n"


class _End:
    pass


class _Failed(Generic[T]):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = _End()


async def with_keepalive(chunks: AsyncIterator[T], interval_s: float) -> AsyncIterator[T | None]:
    """Yield what ``chunks`` yields, and ``None`` after each ``interval_s`` of silence."""
    queue: asyncio.Queue[T | _End | _Failed[T]] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async for item in chunks:
                await queue.put(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await queue.put(_Failed(exc))
            return
        finally:
            # Cancelled while waiting on the full queue, the stream is not inside ``anext``:
            # ``async for`` leaves it suspended, and only a garbage collection would close it
            # (its upstream generating for nobody until then). Close it now.
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
        await queue.put(_END)

    task = asyncio.get_running_loop().create_task(pump(), name="lanewise-sse-pump")
    try:
        while True:
            if queue.empty():
                try:
                    async with asyncio.timeout(interval_s):
                        item = await queue.get()
                except TimeoutError:
                    yield None
                    continue
            else:
                item = queue.get_nowait()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        # Not awaited: this generator may itself be cancelled, and the pump's own
        # cleanup (closing the backend stream) runs on the next loop iteration.
        if not task.done():
            task.cancel()
