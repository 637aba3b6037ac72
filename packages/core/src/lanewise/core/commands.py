"""Core CLI commands: ``serve``, ``doctor``, ``demo``."""

from __future__ import annotations

import asyncio
import math
import os
import sys
from pathlib import Path
from typing import Any

import click
from lanewise.core.errors import ConfigError
from lanewise.core.factory import Components
from lanewise.core.protocols import ProcessLocal
from lanewise.core.settings import Settings, config_path, load_settings
from rich.console import Console
from rich.table import Table

console = Console()


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    config = (ctx.obj or {}).get("config")
    return load_settings(config, **overrides)


@click.group(invoke_without_command=True)
@click.option("--host", default=None, help="Interface to bind (default: gateway.host).")
@click.option("--port", type=int, default=None, help="Port (default: gateway.port).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the gateway (or, with a subcommand, another lane's server)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    settings = settings_from(ctx)
    from lanewise.core.container import close_components
    from lanewise.core.gateway.app import create_app
    from lanewise.core.server import uvicorn_limits

    # Fail fast on bad config before forking workers, then release what the check
    # opened (files, locks, connections): each worker builds its own app.
    gw = settings.gateway
    n_workers = workers or gw.workers
    checked = create_app(settings)
    single = single_process_components(checked.state["components"])
    asyncio.run(close_components(checked.state["components"]))
    if n_workers > 1 and single:
        raise ConfigError(
            f"{', '.join(single)} can be open in one process only, so the gateway cannot run "
            f"{n_workers} workers; use --workers 1, or a server-backed component to scale out "
            '(e.g. retrieval.vector_store kind = "pgvector" or "weaviate")'
        )
    config = (ctx.obj or {}).get("config")
    if config:
        os.environ["LANEWISE_CONFIG"] = str(Path(config).resolve())
    uvicorn.run(
        "lanewise.core.gateway.app:create_app_from_env",
        factory=True,
        host=host or gw.host,
        port=port if port is not None else gw.port,
        workers=n_workers,
        # uvicorn takes whole seconds; rounding up never cuts a configured grace short.
        timeout_graceful_shutdown=math.ceil(gw.shutdown_timeout_s),
        log_level="info",
        access_log=False,
        **uvicorn_limits(gw, in_process=n_workers == 1),
    )


def single_process_components(components: Components) -> list[str]:
    """Built components that declare ``single_process = True`` (they own a local file)."""
    return sorted(
        {
            type(c).__name__
            for c in components.closeables()
            if isinstance(c, ProcessLocal) and c.single_process
        }
    )


@click.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check the configuration, the loaded plugins and every configured service."""
    from lanewise.core.container import build_components
    from lanewise.core.gateway.health import readiness_checks, run_checks
    from lanewise.core.plugins import get_plugin_manager, installed_plugins, loaded_plugin_names
    from lanewise.core.versions import installed_distributions

    problems = 0
    source = config_path((ctx.obj or {}).get("config"))
    console.print(f"config file: {source or '(none; defaults and LANEWISE_* only)'}")
    try:
        settings = settings_from(ctx)
        console.print("[green]✓[/] configuration is valid")
    except ConfigError as exc:
        console.print(f"[red]✗[/] {exc.detail}")
        sys.exit(1)
    for name, version in installed_distributions().items():
        console.print(f"  {name} {version}")
    try:
        pm = (ctx.obj or {}).get("plugin_manager") or get_plugin_manager(settings.plugins)
    except ConfigError as exc:
        console.print(f"[red]✗[/] {exc.detail}")
        sys.exit(1)
    loaded = loaded_plugin_names(pm)
    console.print(f"plugins loaded: {', '.join(loaded)}")
    sections = [f"[{n}] ({s.plugin})" for n, s in sorted(settings.lane_sections.items())]
    console.print(f"settings sections of installed lanes: {', '.join(sections) or 'none'}")
    skipped = sorted(set(installed_plugins()) - set(loaded))
    if skipped:
        console.print(
            f"plugins installed but not allowed by LANEWISE_PLUGINS: {', '.join(skipped)}"
        )
    try:
        components = build_components(settings, pm)
    except ConfigError as exc:
        console.print(f"[red]✗[/] {exc.detail}")
        sys.exit(1)
    models = components.pipeline().model_names()
    console.print(f"models: {', '.join(models) or '(none: install lanewise-inference)'}")
    results = asyncio.run(run_checks(readiness_checks(components)))
    table = Table("service", "status")
    for name, why in results.items():
        table.add_row(name, "[green]ok[/]" if why is None else f"[red]{why}[/]")
        problems += why is not None
    if results:
        console.print(table)
    else:
        console.print("no services to check")
    if problems:
        console.print(f"[red]{problems} problem(s) found[/]")
        sys.exit(1)
    console.print("[green]all checks passed[/]")


@click.command()
@click.option(
    "--question",
    default="What is lanewise and how are its lanes deployed?",
    show_default=True,
    help="The question to ask through the gateway.",
)
@click.option(
    "--docs",
    "docs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs"),
    show_default=True,
    help="Directory the installed lanes index before the question is asked.",
)
@click.pass_context
def demo(ctx: click.Context, question: str, docs_dir: Path) -> None:
    """Run the main job on embedded defaults: index docs, then ask through the gateway."""
    from lanewise.core.demo import run_demo

    settings = settings_from(ctx)
    pm = (ctx.obj or {}).get("plugin_manager")
    sys.exit(
        run_demo(settings, question=question, docs_dir=docs_dir, console=console, plugin_manager=pm)
    )
