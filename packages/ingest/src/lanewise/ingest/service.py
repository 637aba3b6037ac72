"""Jobs: what the API, the CLI and the demo call (the executor behind them varies).

``queue = "embedded"`` runs jobs in this process, with job state in SQLite
under ``data_dir``; ``queue = "celery"`` sends them to ``lanewise worker``s
through Redis, which also holds the job state the workers update.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lanewise.core.factory import Components
from lanewise.core.settings import Settings
from lanewise.ingest.executor import EmbeddedExecutor
from lanewise.ingest.kv import SqliteKeyValue
from lanewise.ingest.pipeline import IngestRuntime, Payload, build_runtime, item_payload
from lanewise.ingest.settings import IngestSettings, ingest_settings
from lanewise.ingest.state import IngestState, JobView
from lanewise.ingest.wiring import Closer, build_loaders, open_components


def open_state(
    settings: Settings, ingest: IngestSettings, queue: str
) -> tuple[IngestState, Closer]:
    if queue == "celery":
        import redis
        from lanewise.ingest.celery_app import broker_url

        client = redis.Redis.from_url(broker_url(settings, ingest), decode_responses=True)

        async def close_redis() -> None:
            client.close()

        return IngestState(client), close_redis
    kv = SqliteKeyValue(Path(settings.data_dir) / "ingest" / "state.sqlite3")

    async def close_sqlite() -> None:
        kv.close()

    return IngestState(kv), close_sqlite


def spool_root(settings: Settings) -> Path:
    """Where uploads wait for their job (shared by the gateway and the workers)."""
    return Path(settings.data_dir) / "ingest" / "uploads"


def runtime_from(components: Components, settings: Settings, state: IngestState) -> IngestRuntime:
    ingest = ingest_settings(settings)
    loaders = build_loaders(components, ingest.loaders)
    return build_runtime(components, ingest, state, loaders, spool_root(settings))


def open_runtime(
    settings: Settings, *, queue: str, plugin_manager: Any = None
) -> tuple[IngestRuntime, Closer]:
    """Components, job state and runtime for a worker (or the CLI's own process)."""
    components, close_components = open_components(settings, plugin_manager)
    state, close_state = open_state(settings, ingest_settings(settings), queue)

    async def close() -> None:
        await close_state()
        await close_components()

    try:
        return runtime_from(components, settings, state), close
    except BaseException:
        asyncio.run(close()) if not _loop_running() else None
        raise


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass(frozen=True)
class Upload:
    """A file to ingest: ``name`` becomes its document id, ``path`` holds its bytes."""

    name: str
    path: Path


class IngestService:
    """Submit jobs and read them back, whichever executor runs them."""

    def __init__(
        self,
        *,
        settings: Settings,
        state: IngestState,
        executor: Any,
        close: Closer,
    ) -> None:
        self.settings = settings
        self.ingest = ingest_settings(settings)
        self.state = state
        self.executor = executor
        self._close = close

    @property
    def spool(self) -> Path:
        return spool_root(self.settings)

    def queue_depth(self) -> int:
        depth: int = self.executor.queue_depth()
        return depth

    async def create(
        self,
        *,
        tenant: str,
        files: Sequence[Upload],
        request_id: str = "",
        spooled: bool = False,
    ) -> tuple[str, list[Payload]]:
        """Record a job over ``files``; returns its id and its items (not yet started)."""
        job = uuid.uuid4().hex
        names = [f.name for f in files]
        items = [
            item_payload(
                job=job,
                tenant=tenant,
                index=n,
                name=f.name,
                path=f.path,
                request_id=request_id,
                spooled=spooled,
            )
            for n, f in enumerate(files)
        ]
        await asyncio.to_thread(
            self.state.create_job, tenant=tenant, items=names, job_id=job, payloads=items
        )
        return job, items

    async def submit(
        self,
        *,
        tenant: str,
        files: Sequence[Upload],
        request_id: str = "",
        wait: bool = False,
        spool: Path | None = None,
    ) -> str:
        """Start a job (``wait``: and run it to its end); returns its id.

        ``spool`` holds the uploaded files: each is removed once its item is finished
        (done, skipped or failed), by whichever process finished it (this one, or a Celery
        worker on the shared data directory), the directory with the last one.
        """
        job, items = await self.create(
            tenant=tenant, files=files, request_id=request_id, spooled=spool is not None
        )
        if wait:
            await self.executor.run(items)
        elif spool is not None and isinstance(self.executor, EmbeddedExecutor):
            await self.executor.submit(items, then=lambda: self.drop_spool(spool))
        else:
            await self.executor.submit(items)
        return job

    def job(self, job: str, *, tenant: str) -> JobView | None:
        """The job, only for its own tenant (another tenant's id reads as unknown)."""
        view = self.state.job(job)
        if view is None or view.tenant != tenant:
            return None
        resend_lost = getattr(self.executor, "resend_lost", None)
        if resend_lost is not None and view.status != "completed":
            resend_lost(job)  # its pending items, if the job stalled (their tasks lost)
        return view

    def spool_dir(self) -> Path:
        path = self.spool / uuid.uuid4().hex
        path.mkdir(parents=True, exist_ok=True)
        return path

    def drop_spool(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    async def aclose(self) -> None:
        closer = getattr(self.executor, "aclose", None)
        if closer is not None:
            await closer()
        await self._close()


def open_service(
    settings: Settings, components: Components, *, queue: str | None = None
) -> IngestService:
    """The service for ``settings``, on the caller's already-built ``components``."""
    ingest = ingest_settings(settings)
    queue = queue or ingest.queue
    state, close_state = open_state(settings, ingest, queue)
    executor: Any
    if queue == "celery":
        from lanewise.ingest.celery_app import create_celery_app
        from lanewise.ingest.celery_executor import CeleryExecutor

        app = create_celery_app(settings, components.plugin_manager)
        executor = CeleryExecutor(app, state)
    else:
        executor = EmbeddedExecutor(runtime_from(components, settings, state))
    return IngestService(settings=settings, state=state, executor=executor, close=close_state)
