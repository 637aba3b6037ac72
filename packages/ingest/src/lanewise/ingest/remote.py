"""``lanewise ingest --url``: upload to a gateway and follow the job there."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from lanewise.ingest.local import local_files
from lanewise.ingest.progress import follow, report
from rich.console import Console


def ingest_remote(
    url: str, api_key: str | None, paths: Sequence[Path], console: Console
) -> dict[str, Any]:
    return asyncio.run(_ingest_remote(url, api_key, paths, console))


async def _ingest_remote(
    url: str, api_key: str | None, paths: Sequence[Path], console: Console
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    files = local_files(paths, Path.cwd())
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
        with contextlib.ExitStack() as stack:
            parts = [("files", (f.name, stack.enter_context(f.path.open("rb")))) for f in files]
            response = await client.post("/v1/ingest", files=parts)
        if response.status_code != 202:
            raise SystemExit(f"POST /v1/ingest failed ({response.status_code}): {response.text}")
        job_id = response.json()["id"]

        async def read() -> dict[str, Any] | None:
            got = await client.get(f"/v1/ingest/jobs/{job_id}")
            got.raise_for_status()
            job: dict[str, Any] = got.json()
            return job

        job = await follow(read, len(files), console)
    report(job, console)
    return job
