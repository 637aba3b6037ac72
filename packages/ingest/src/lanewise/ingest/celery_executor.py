"""Jobs sent to ``lanewise worker``s: one ``parse`` task per file on the ``ingest`` queue."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from lanewise.ingest.celery_app import PARSE_TASK, QUEUES, send
from lanewise.ingest.pipeline import Payload
from lanewise.ingest.state import IngestState


class CeleryExecutor:
    name = "celery"

    def __init__(self, app: Any, state: IngestState) -> None:
        self.app = app
        self.state = state

    def queue_depth(self) -> int:
        """Tasks waiting in the lane's queues (Redis lists named like the queues)."""
        kv: Any = self.state.kv
        return sum(int(kv.llen(q)) for q in QUEUES)

    async def submit(self, items: Sequence[Payload]) -> None:
        await asyncio.to_thread(self._send, items)

    def _send(self, items: Sequence[Payload]) -> None:
        with self.app.producer_or_acquire() as producer:
            for item in items:
                send(self.app, PARSE_TASK, item, "ingest", producer)

    def resend_lost(self, job: str) -> int:
        """Send the pending items of a stalled job again (parse is idempotent); how many.

        Past twice the visibility timeout, Redis would have redelivered anything a dead
        worker held; after a Redis restart, workers put back what they held as soon as
        they reconnect, so past one task time limit what is still untouched was lost.
        """
        conf = self.app.conf
        stalled = self.state.stalled_items(
            job,
            2 * conf.broker_transport_options["visibility_timeout"],
            after_restart_s=conf.task_time_limit,
        )
        self._send(stalled)
        return len(stalled)

    async def run(self, items: Sequence[Payload]) -> None:
        """Send, then wait until the workers finished every item."""
        await self.submit(items)
        if not items:
            return
        job = items[0]["job"]
        while True:
            view = await asyncio.to_thread(self.state.job, job)
            if view is not None and view.finished_at is not None:
                return
            await asyncio.to_thread(self.resend_lost, job)
            await asyncio.sleep(0.2)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.app.close)
