"""Ingesting files from this process (``lanewise ingest`` without ``--url``, ``lanewise demo``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lanewise.core.types import ANONYMOUS
from lanewise.ingest.progress import follow, report
from lanewise.ingest.service import IngestService, Upload
from rich.console import Console


def local_files(paths: Iterable[Path], base: Path) -> list[Upload]:
    """Files (directories read recursively, dot-files skipped) named relative to ``base``."""
    found: list[Upload] = []
    base = base.resolve()
    for path in paths:
        resolved = path.resolve()
        candidates = (
            [resolved]
            if resolved.is_file()
            else sorted(p for p in resolved.rglob("*") if p.is_file() and not _hidden(p, resolved))
        )
        for file in candidates:
            name = file.relative_to(base).as_posix() if file.is_relative_to(base) else str(file)
            found.append(Upload(name, file))
    return found


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


async def ingest_files(
    service: IngestService,
    files: Sequence[Upload],
    console: Console,
    *,
    tenant: str = ANONYMOUS.tenant,
    label: str = "ingesting",
) -> dict[str, Any]:
    """Run a job over ``files`` to its end, with a progress bar; returns the job's record."""
    job_id, items = await service.create(tenant=tenant, files=files)
    runner = asyncio.ensure_future(service.executor.run(items))

    async def read() -> dict[str, Any] | None:
        view = await asyncio.to_thread(service.job, job_id, tenant=tenant)
        return None if view is None else view.as_dict()

    try:
        job = await follow(read, len(files), console, until=runner, label=label)
    finally:
        if not runner.done():
            runner.cancel()
    report(job, console)
    return job
