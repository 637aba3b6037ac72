"""Fair sharing of one embedder between callers.

Without it the embedder serves requests in arrival order, whole: one tenant's
2,048-input request held every other tenant's query embedding (and so their
``/v1/retrieve`` and RAG chat) for as long as it ran. :class:`FairEmbedder`
wraps any embedder and feeds it one batch at a time from two queues:

- **interactive**: small requests (a query for retrieval, a few texts). They
  are micro-batched together, tenants taken in turn, and always go first.
- **bulk**: everything larger (``/v1/embeddings`` with many inputs, ingestion).
  Each bulk request is cut into batches of ``batch_size`` and tenants take
  turns batch by batch (round robin), so one tenant's job cannot starve another's.

Of the embedder's ``slots`` (concurrent batches; ``max_concurrency`` of the
inner embedder), bulk work may hold all but one: an interactive batch never
waits for a bulk batch to finish unless the embedder has a single slot, and
then for one batch at most. A caller that gives up (deadline, disconnect)
takes its unstarted batches with it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from lanewise.core.context import current_request
from lanewise.core.protocols import Embedder

INTERACTIVE_MAX_TEXTS = 8
"""Requests with at most this many texts are interactive (a query is one text)."""


class _Job:
    __slots__ = ("done", "future", "next", "results", "texts")

    def __init__(self, texts: list[str], future: asyncio.Future[list[list[float]]]) -> None:
        self.texts = texts
        self.future = future
        self.results: list[list[float] | None] = [None] * len(texts)
        self.next = 0  # index of the first text not yet handed to the embedder
        self.done = 0  # texts embedded so far

    @property
    def abandoned(self) -> bool:
        return self.future.done()


class _Queue:
    """Jobs per tenant, served round robin."""

    def __init__(self) -> None:
        self.jobs: dict[str, deque[_Job]] = {}
        self.turns: deque[str] = deque()

    def put(self, tenant: str, job: _Job) -> None:
        if tenant not in self.jobs:
            self.jobs[tenant] = deque()
            self.turns.append(tenant)
        self.jobs[tenant].append(job)

    def take(self, max_texts: int, *, whole_jobs: bool) -> list[tuple[_Job, int, int]]:
        """Up to ``max_texts`` texts, one piece per tenant per turn: (job, start, stop)."""
        taken: list[tuple[_Job, int, int]] = []
        room = max_texts
        while room > 0 and self.turns:
            tenant = self.turns.popleft()
            jobs = self.jobs[tenant]
            while jobs and (jobs[0].abandoned or jobs[0].next >= len(jobs[0].texts)):
                jobs.popleft()
            if not jobs:
                del self.jobs[tenant]
                continue
            job = jobs[0]
            remaining = len(job.texts) - job.next
            if whole_jobs and remaining > room and taken:
                self.turns.appendleft(tenant)  # it goes first in the next batch
                break
            count = min(remaining, room)
            taken.append((job, job.next, job.next + count))
            job.next += count
            room -= count
            self.turns.append(tenant)
            if not whole_jobs:
                break  # a bulk batch comes from one tenant; the next batch is the next tenant's
        return taken


class FairEmbedder:
    """An :class:`~lanewise.core.protocols.Embedder` that shares ``inner`` fairly."""

    def __init__(
        self,
        inner: Embedder,
        *,
        slots: int,
        batch_size: int,
        interactive_max_texts: int = INTERACTIVE_MAX_TEXTS,
    ) -> None:
        self.inner = inner
        self.id = inner.id
        self.version = inner.version
        self.dimension = inner.dimension
        self.slots = max(1, slots)
        self.batch_size = max(1, batch_size)
        self.interactive_max_texts = interactive_max_texts
        self._interactive = _Queue()
        self._bulk = _Queue()
        self._running = 0
        self._running_bulk = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def __getattr__(self, name: str) -> Any:
        # count_tokens, token_counts, check, aclose, single_process...: the inner embedder's.
        return getattr(self.inner, name)

    async def embed(
        self, texts: Sequence[str], *, tenant: str | None = None, interactive: bool | None = None
    ) -> list[list[float]]:
        """Embed ``texts`` for ``tenant``; small requests are interactive unless told.

        The tenant defaults to the current request's principal (``lanewise.core.context``),
        so callers that only know the Embedder protocol are shared fairly too.
        """
        if not texts:
            return []
        if tenant is None:
            context = current_request()
            tenant = context.principal.tenant if context is not None else ""
        future: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        job = _Job(list(texts), future)
        small = len(texts) <= self.interactive_max_texts
        (self._interactive if (small if interactive is None else interactive) else self._bulk).put(
            tenant, job
        )
        self._dispatch()
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.cancel()  # its unstarted batches are skipped from now on
            raise

    def _dispatch(self) -> None:
        while self._running < self.slots:
            bulk = False
            pieces = self._interactive.take(self.batch_size, whole_jobs=True)
            if not pieces and (self._running_bulk < self.slots - 1 or self.slots == 1):
                pieces = self._bulk.take(self.batch_size, whole_jobs=False)
                bulk = True
            if not pieces:
                return
            self._running += 1
            self._running_bulk += bulk
            task = asyncio.get_running_loop().create_task(self._run(pieces, bulk))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, pieces: list[tuple[_Job, int, int]], bulk: bool) -> None:
        try:
            texts = [t for job, start, stop in pieces for t in job.texts[start:stop]]
            try:
                vectors = await self.inner.embed(texts)
            except Exception as exc:
                for job, _, _ in pieces:
                    if not job.future.done():
                        job.future.set_exception(exc)
                return
            offset = 0
            for job, start, stop in pieces:
                job.results[start:stop] = vectors[offset : offset + stop - start]
                offset += stop - start
                job.done += stop - start
                if job.done == len(job.texts) and not job.future.done():
                    job.future.set_result(job.results)  # type: ignore[arg-type]
        finally:
            self._running -= 1
            self._running_bulk -= bulk
            self._dispatch()
