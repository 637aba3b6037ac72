"""``POST /v1/ingest`` and ``GET /v1/ingest/jobs/{id}``, added by ``lanewise_configure_gateway``.

The tenant always comes from the authenticated principal, never from the body.
A job names files by upload (multipart, field ``files``) or by server-side
path (JSON ``{"paths": [...]}``, only inside ``ingest.allowed_root``).
Backpressure: while more tasks are queued than ``ingest.max_queue_depth``,
new jobs get 429 with ``Retry-After``; a body above ``ingest.max_upload_bytes``
gets 413 from its ``Content-Length``, before it is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from lanewise.core.errors import InvalidRequest, LimitExceeded, NotFound, PayloadTooLarge
from lanewise.core.factory import Components
from lanewise.core.gateway.principal import authenticated, request_id
from lanewise.core.settings import Settings
from lanewise.ingest.paths import server_files, upload_name
from lanewise.ingest.queue_state import QueueProbe, watch
from lanewise.ingest.service import IngestService, Upload, open_service
from lanewise.ingest.settings import IngestSettings, ingest_settings
from litestar import Litestar, Request, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery

RETRY_AFTER_S = 5.0


class JobTotals(msgspec.Struct, kw_only=True):
    items: int
    done: int
    skipped: int
    failed: int
    chunks_added: int
    chunks_removed: int


class JobFailure(msgspec.Struct, kw_only=True):
    item: int
    name: str
    reason: str


class JobOut(msgspec.Struct, kw_only=True):
    """``GET /v1/ingest/jobs/{id}``: totals, progress (0..1), failures with reasons."""

    id: str
    status: str
    totals: JobTotals
    progress: float
    failures: list[JobFailure]
    index_version: int | None
    created_at: float
    finished_at: float | None
    items: list[dict[str, Any]] | None = None


class ServiceHolder:
    """One :class:`IngestService` per gateway process, opened on first use, closed at exit."""

    def __init__(self, settings: Settings, components: Components) -> None:
        self.settings = settings
        self.components = components
        self.service: IngestService | None = None
        self.probe = QueueProbe(self)

    def get(self) -> IngestService:
        if self.service is None:
            self.service = open_service(self.settings, self.components)
        return self.service

    @asynccontextmanager
    async def lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(self.probe.close)
            if self.service is not None:
                await self.service.aclose()


def routes(ingest: IngestSettings) -> list[Any]:
    # The route's own body limit (for uploads without Content-Length) is the ingest limit.
    # POST is not in /schema (docs/ingest.md documents it): whether a schema-valid body is
    # accepted depends on the server's files (paths inside ``ingest.allowed_root``), which
    # no schema can say, so the document would promise what the gateway refuses.
    @post(
        "/v1/ingest",
        tags=["ingest"],
        status_code=202,
        request_max_body_size=ingest.max_upload_bytes,
        include_in_schema=False,
    )
    async def submit_job(
        request: Request[Any, Any, Any], ingest_service: NamedDependency[IngestService]
    ) -> dict[str, Any]:
        """Start an ingestion job: multipart ``files`` or JSON ``{"paths": [...]}``."""
        return await _submit(request, ingest_service)

    @get(
        "/v1/ingest/jobs/{job_id:str}",
        tags=["ingest"],
        opt={"ok": JobOut, "errors": (400, 404)},
    )
    async def job_status(
        job_id: FromPath[str],
        request: Request[Any, Any, Any],
        ingest_service: NamedDependency[IngestService],
        items: FromQuery[bool] = False,
    ) -> JobOut:
        """A job's totals, progress, failures (with reasons) and, with ``?items=true``, items."""
        tenant = authenticated(request).tenant
        view = await asyncio.to_thread(ingest_service.job, job_id, tenant=tenant)
        if view is None:
            raise NotFound(f"no ingest job {job_id!r}; use the id POST /v1/ingest returned")
        return msgspec.convert(view.as_dict(with_items=items), JobOut)

    return [submit_job, job_status]


async def _submit(request: Request[Any, Any, Any], service: IngestService) -> dict[str, Any]:
    limits = service.ingest
    depth = await asyncio.to_thread(service.queue_depth)
    if depth >= limits.max_queue_depth:
        raise LimitExceeded(
            f"the ingest queue holds {depth} tasks (limit {limits.max_queue_depth}); "
            f"retry after {RETRY_AFTER_S:g} s",
            retry_after_s=RETRY_AFTER_S,
            limit="ingest.max_queue_depth",
            queue_depth=depth,
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise PayloadTooLarge(
            f"the upload is {int(declared)} bytes; ingest.max_upload_bytes is "
            f"{limits.max_upload_bytes}: send fewer or smaller files per job",
            limit=limits.max_upload_bytes,
        )
    principal = authenticated(request)
    content_type = request.headers.get("content-type", "")
    spool: Path | None = None
    if content_type.startswith("multipart/form-data"):
        spool = service.spool_dir()
        files = await _spool_uploads(request, spool)
    elif content_type.startswith("application/json"):
        body = await request.json()
        paths = body.get("paths") if isinstance(body, dict) else None
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise InvalidRequest('send {"paths": ["file or directory", ...]}', field="paths")
        files = await asyncio.to_thread(server_files, paths, limits.allowed_root)
    else:
        raise InvalidRequest(
            "send multipart/form-data with one or more 'files' fields, or JSON "
            '{"paths": [...]} naming files inside ingest.allowed_root'
        )
    if not files:
        raise InvalidRequest("the job names no files", field="files")
    job = await service.submit(
        tenant=principal.tenant, files=files, request_id=request_id(request), spool=spool
    )
    return {"id": job, "items": len(files), "status_url": f"/v1/ingest/jobs/{job}"}


async def _spool_uploads(request: Request[Any, Any, Any], spool: Path) -> list[Upload]:
    form = await request.form()
    uploads: list[Upload] = []
    for n, value in enumerate(form.getall("files") if "files" in form else []):
        if not isinstance(value, UploadFile):
            raise InvalidRequest("every 'files' field must be a file", field="files")
        name = upload_name(value.filename or f"upload-{n}")
        target = spool / f"{n:06d}"
        data = await value.read()
        await asyncio.to_thread(target.write_bytes, data)
        uploads.append(Upload(name, target))
    return uploads


def configure(app_config: Any, settings: Settings, components: Components) -> None:
    holder = ServiceHolder(settings, components)
    watch(components, holder.probe)
    app_config.route_handlers.extend(routes(ingest_settings(settings)))
    app_config.dependencies["ingest_service"] = Provide(holder.get, sync_to_thread=False)
    app_config.lifespan.append(holder.lifespan)
