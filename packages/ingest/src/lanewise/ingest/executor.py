"""The embedded executor: the same task functions, run in this process.

No broker, no worker: ``submit`` records the job and runs its items one
after another (in a background task for the gateway, awaited for the CLI),
each embed batch as soon as it is cut, with the same retries (exponential
backoff, full jitter, transient errors only: ``run_parse``/``run_embed``, which
the Celery tasks run too), the same failure records and the same job state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from lanewise.ingest.pipeline import IngestRuntime, Payload, embed_inline, run_parse


class _RunNow:
    def __init__(self, runtime: IngestRuntime) -> None:
        self.runtime = runtime

    async def embed(self, payload: Payload) -> None:
        await embed_inline(self.runtime, payload)


class EmbeddedExecutor:
    name = "embedded"

    def __init__(self, runtime: IngestRuntime) -> None:
        self.runtime = runtime
        self._pending = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def queue_depth(self) -> int:
        return self._pending

    async def run(self, items: Sequence[Payload]) -> None:
        """Run every item of a job to its end (done, skipped or failed)."""
        rt = self.runtime
        dispatch = _RunNow(rt)
        remaining = len(items)
        self._pending += remaining
        try:
            for item in items:
                await run_parse(rt, item, dispatch)
                self._pending -= 1
                remaining -= 1
        finally:
            self._pending -= remaining

    async def submit(
        self, items: Sequence[Payload], *, then: Callable[[], None] | None = None
    ) -> None:
        """Start the job in the background (the gateway's case) and return at once."""
        task = asyncio.get_running_loop().create_task(self._run_then(items, then))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_then(self, items: Sequence[Payload], then: Callable[[], None] | None) -> None:
        try:
            await self.run(items)
        finally:
            if then is not None:
                then()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
