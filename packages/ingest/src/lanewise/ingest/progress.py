"""A job's progress on the terminal: one bar over its files, with chunk totals."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

POLL_S = 0.2


async def follow(
    read: Callable[[], Awaitable[dict[str, Any] | None]],
    total: int,
    console: Console,
    *,
    until: asyncio.Future[Any] | None = None,
    label: str = "ingesting",
) -> dict[str, Any]:
    """Poll ``read`` (a job as ``as_dict`` shows it) until it completes; draw a bar meanwhile."""
    columns = (
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=total, detail="")
        while True:
            job = await read()
            if job is not None:
                t = job["totals"]
                finished = t["done"] + t["skipped"] + t["failed"]
                detail = (
                    f"{t['chunks_added']} chunks added, {t['skipped']} unchanged/duplicate, "
                    f"{t['failed']} failed"
                )
                bar.update(task, completed=finished, detail=detail)
                if job["status"] == "completed":
                    return job
            if until is not None and until.done():
                until.result()  # re-raise what stopped the job's runner
                if job is not None and job["status"] == "completed":
                    return job
            await asyncio.sleep(POLL_S)


def report(job: dict[str, Any], console: Console) -> None:
    t = job["totals"]
    console.print(
        f"job {job['id']}: {t['done']} ingested, {t['skipped']} skipped (unchanged or duplicate), "
        f"{t['failed']} failed; {t['chunks_added']} chunks added, {t['chunks_removed']} removed; "
        f"index version {job['index_version']}"
    )
    for failure in job["failures"]:
        console.print(f"  [red]✗[/] {failure['name']}: {failure['reason']}")
