"""The ``lanewise`` command: a click group that plugins extend through a hook."""

from __future__ import annotations

import sys

import click
from lanewise.core.errors import ConfigError
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.versions import installed_distributions
from rich.console import Console

console = Console(stderr=True)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for name, version in installed_distributions().items():
        click.echo(f"{name} {version}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="List every installed lanewise package and its version.",
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    envvar="LANEWISE_CONFIG",
    help="Path to lanewise.toml (default: $LANEWISE_CONFIG, else ./lanewise.toml).",
)
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """lanewise: every AI workload in its own lane."""
    # Keep what a caller passed in (``CliRunner.invoke(cli, obj={"plugin_manager": pm})``).
    ctx.ensure_object(dict)["config"] = config


def build_cli() -> click.Group:
    try:
        pm = get_plugin_manager()
    except ConfigError as exc:
        # Keep --version and doctor usable, which is when they are needed most: core's
        # commands only, and each command that loads plugins fails with this message.
        console.print(f"[red]error:[/] {exc.detail}\n[yellow]only core's commands are available[/]")
        pm = get_plugin_manager([])
    pm.hook.lanewise_configure_cli(cli=cli)
    return cli


def main() -> None:
    group = build_cli()
    try:
        group(standalone_mode=False)
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/] {exc.detail}")
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
