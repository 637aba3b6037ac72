"""``lanewise ingest PATH...`` and ``lanewise worker``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click
from lanewise.core.errors import ConfigError
from rich.console import Console

console = Console()


def _settings(ctx: click.Context) -> Any:
    from lanewise.core.settings import load_settings

    return load_settings((ctx.obj or {}).get("config"))


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--url",
    default=None,
    help="A gateway to send the files to (POST /v1/ingest); default: ingest in this process.",
)
@click.option("--api-key", envvar="LANEWISE_API_KEY", default=None, help="For --url.")
@click.pass_context
def ingest_command(
    ctx: click.Context, paths: tuple[Path, ...], url: str | None, api_key: str | None
) -> None:
    """Ingest files and directories (txt, Markdown, HTML, PDF, JSON/JSONL) with a progress bar."""
    if url is not None:
        from lanewise.ingest.remote import ingest_remote

        job = ingest_remote(url, api_key, paths, console)
    else:
        job = asyncio.run(_ingest_here(ctx, paths))
    sys.exit(1 if job["totals"]["failed"] else 0)


async def _ingest_here(ctx: click.Context, paths: tuple[Path, ...]) -> dict[str, Any]:
    from lanewise.ingest.local import ingest_files, local_files
    from lanewise.ingest.service import open_service
    from lanewise.ingest.wiring import open_components

    settings = _settings(ctx)
    components, close = open_components(settings, (ctx.obj or {}).get("plugin_manager"))
    try:
        service = open_service(settings, components)
        try:
            return await ingest_files(service, local_files(paths, Path.cwd()), console)
        finally:
            await service.aclose()
    finally:
        await close()


@click.command("worker")
@click.option(
    "--queues",
    default="ingest,embed",
    show_default=True,
    help="Queues to consume (comma-separated).",
)
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--pool",
    type=click.Choice(["prefork", "solo", "threads"]),
    default="prefork",
    show_default=True,
)
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--hostname", "-n", default=None, help="Worker node name (default: celery's).")
@click.pass_context
def worker_command(
    ctx: click.Context,
    queues: str,
    concurrency: int,
    pool: str,
    loglevel: str,
    hostname: str | None,
) -> None:
    """Run an ingest worker: Celery on Redis, consuming the given queues."""
    from lanewise.ingest.worker import run_worker

    config = (ctx.obj or {}).get("config")
    if config:
        # Worker children load settings themselves (after the fork), from the environment.
        os.environ["LANEWISE_CONFIG"] = str(Path(config).resolve())
    try:
        run_worker(
            _settings(ctx),
            queues=queues,
            concurrency=concurrency,
            pool=pool,
            loglevel=loglevel,
            hostname=hostname,
        )
    except ConfigError:
        raise
