"""``lanewise keys create|list|revoke`` and ``lanewise budgets set|show``.

They work on the ledger the gateway uses (``governance.ledger_url``, else
``database_url``, else SQLite in ``data_dir``); gateways see a new budget within
seconds and a revoked key within ``governance.key_cache_s``.
"""

from __future__ import annotations

import time
from typing import Any

import click
from lanewise.core.settings import load_settings
from lanewise.governance.budgets import Budget, counter_for, from_amount, to_amount
from lanewise.governance.keys import Scopes
from lanewise.governance.runtime import Governance, build
from lanewise.governance.settings import GovernanceSettings
from rich.console import Console
from rich.table import Table

console = Console()
notes = Console(stderr=True)


def _governance(ctx: click.Context) -> Governance:
    settings = load_settings((ctx.find_root().obj or {}).get("config"))
    return build(
        settings.section(GovernanceSettings).model_copy(update={"store": "memory"}),
        data_dir=settings.data_dir,
        redis_url=None,
        database_url=settings.database_url,
    )


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (stored as SHA-256, shown once)."""


@keys.command("create")
@click.option("--tenant", required=True)
@click.option("--user")
@click.option("--workflow")
@click.option("--priority", type=click.Choice(["interactive", "batch"]), default="interactive")
@click.option("--name", default="")
@click.option("--model", "models", multiple=True, help="allowed model (glob); repeat; default all")
@click.option("--route", "routes", multiple=True, help="allowed path (glob); repeat; default all")
@click.option("--admin", is_flag=True, help="may manage its tenant's keys and budgets")
@click.option("--expires-in-days", type=float)
@click.pass_context
def create_key(
    ctx: click.Context,
    tenant: str,
    user: str | None,
    workflow: str | None,
    priority: Any,
    name: str,
    models: tuple[str, ...],
    routes: tuple[str, ...],
    admin: bool,
    expires_in_days: float | None,
) -> None:
    """Create a key and print it once."""
    governance = _governance(ctx)
    key, secret = governance.keys.create(
        tenant=tenant,
        user=user,
        workflow=workflow,
        priority=priority,
        scopes=Scopes(routes=routes, models=models, admin=admin),
        name=name,
        expires_at=time.time() + expires_in_days * 86_400 if expires_in_days else None,
    )
    click.echo(secret)
    notes.print(
        f"[green]key {key.id}[/] for tenant {tenant!r}: store it now, it is not shown again"
    )


@keys.command("list")
@click.option("--tenant")
@click.pass_context
def list_keys(ctx: click.Context, tenant: str | None) -> None:
    governance = _governance(ctx)
    table = Table("id", "tenant", "user", "workflow", "status", "scopes", "name")
    now = time.time()
    for key in governance.keys.list(tenant=tenant):
        scopes = key.scopes
        described = ", ".join(
            f"{kind}={'|'.join(values)}"
            for kind, values in (("models", scopes.models), ("routes", scopes.routes))
            if values
        ) + (" admin" if scopes.admin else "")
        table.add_row(
            key.id,
            key.tenant,
            key.user or "",
            key.workflow or "",
            key.status(now),
            described,
            key.name,
        )
    console.print(table)


@keys.command("revoke")
@click.argument("key_id")
@click.pass_context
def revoke_key(ctx: click.Context, key_id: str) -> None:
    key = _governance(ctx).keys.revoke(key_id)
    click.echo(f"revoked {key.id} (tenant {key.tenant})")


@click.group()
def budgets() -> None:
    """Set and show token and cost budgets."""


@budgets.command("set")
@click.option(
    "--scope", type=click.Choice(["request", "key", "user", "tenant", "workflow"]), required=True
)
@click.option("--subject", default="*", help="tenant, '<tenant>/<user>', key id, ... or '*'")
@click.option(
    "--window", type=click.Choice(["minute", "hour", "day", "month", "lifetime"]), default="day"
)
@click.option("--unit", type=click.Choice(["tokens", "cost"]), default="tokens")
@click.option("--limit", type=float, required=True, help="tokens, or USD for --unit cost")
@click.option("--shadow", is_flag=True, help="measure and report, never refuse")
@click.option("--tenant", help="owner tenant (default: the subject's tenant)")
@click.pass_context
def set_budget(
    ctx: click.Context,
    scope: Any,
    subject: str,
    window: Any,
    unit: Any,
    limit: float,
    shadow: bool,
    tenant: str | None,
) -> None:
    owner = tenant or (
        subject.split("/")[0]
        if scope in ("tenant", "user", "workflow") and subject != "*"
        else None
    )
    budget = Budget(
        scope=scope,
        subject=subject,
        window=window,
        unit=unit,
        limit=to_amount(unit, limit),
        shadow=shadow,
        tenant=owner,
    )
    governance = _governance(ctx)
    governance.ledger.set_budget(budget)
    click.echo(f"{budget.id}: {budget.describe()} = {limit:g}{' (shadow)' if shadow else ''}")


@budgets.command("show")
@click.option("--tenant", help="only this tenant's budgets")
@click.pass_context
def show_budgets(ctx: click.Context, tenant: str | None) -> None:
    """Budgets with what their current window has settled (from the ledger)."""
    governance = _governance(ctx)
    now = time.time()
    table = Table("id", "scope", "subject", "window", "unit", "limit", "settled", "reset")
    listed = governance.catalogue.budgets()
    for budget in listed:
        if tenant is not None and budget.tenant not in (tenant, None):
            continue
        subjects = (
            [budget.subject]
            if budget.subject != "*"
            else sorted(governance.ledger.totals(budget, now))
        )
        for subject in subjects or ["*"]:
            spent = governance.ledger.spent(budget, subject, now)
            counter = counter_for(budget, subject, now)
            reset = (
                "never"
                if counter.reset_at == float("inf")
                else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(counter.reset_at))
            )
            table.add_row(
                budget.id,
                budget.scope,
                subject,
                budget.window,
                budget.unit,
                f"{from_amount(budget.unit, budget.limit):g}",
                f"{from_amount(budget.unit, spent):g}",
                reset,
            )
    console.print(table)
