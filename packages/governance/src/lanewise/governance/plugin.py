"""Hook implementations of lanewise-governance (entry point group `lanewise`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from lanewise.core.auth import bearer_token
from lanewise.core.hookspecs import hookimpl
from lanewise.core.settings import Settings
from lanewise.core.types import Principal, StateSample
from lanewise.governance.settings import GovernanceSettings

if TYPE_CHECKING:
    import click
    from lanewise.core.factory import Components, FactoryContext
    from lanewise.core.guards import ModelCallGuard
    from lanewise.core.registry import Register
    from lanewise.governance.runtime import Governance
    from litestar.config.app import AppConfig

GUARD_ORDER = 200


def governance_for(settings: Settings) -> Governance:
    from lanewise.governance.runtime import shared

    return shared(
        settings.section(GovernanceSettings),
        data_dir=settings.data_dir,
        redis_url=settings.redis_url,
        database_url=settings.database_url,
        request_timeout_s=settings.gateway.request_timeout_s,
        owner=settings,
    )


def governance_active(settings: Settings) -> bool:
    """Whether there is anything to govern: with nothing configured and no ledger yet,
    the lane stays out of the request path (no guard, no ledger file)."""
    from lanewise.governance.ledger import DEFAULT_FILE

    section = settings.section(GovernanceSettings)
    if not section.enabled:
        return False
    if section.budgets or section.rate_limits or section.admin_keys or section.prices:
        return True
    if section.ledger_url or settings.database_url:
        return True
    return (settings.data_dir / DEFAULT_FILE).exists()


@hookimpl
def lanewise_register_settings(register: Register) -> None:
    register(
        "governance",
        GovernanceSettings,
        description="API keys, budgets, rate limits, prices (lanewise-governance)",
    )


def _make_guard(ctx: FactoryContext) -> ModelCallGuard | None:
    from lanewise.governance.guard import BudgetGuard
    from lanewise.governance.runtime import BudgetCounters

    if not governance_active(ctx.settings):
        return None
    governance = governance_for(ctx.settings)
    ctx.on_close(BudgetCounters(governance, owner=ctx.settings))
    return BudgetGuard(governance.governor, governance.keys)


@hookimpl
def lanewise_register_guards(register: Register) -> None:
    register(
        "budgets",
        _make_guard,
        order=GUARD_ORDER,
        description="scopes, rate limits and budgets reserved before every model call",
    )


_resolvers: dict[int, tuple[Settings, Governance]] = {}


@hookimpl(tryfirst=True)
def lanewise_resolve_principal(headers: Mapping[str, str], settings: Settings) -> Principal | None:
    # Asked on every request: the Governance of a Settings object is looked up once (again
    # once it is closed with its app).
    found = _resolvers.get(id(settings))
    if found is None or found[0] is not settings or found[1].closed:
        if not governance_active(settings):
            return None  # not remembered: a ledger file may appear later
        found = _resolvers[id(settings)] = (settings, governance_for(settings))
    return found[1].resolve(bearer_token(headers))


@hookimpl
def lanewise_configure_gateway(
    app_config: AppConfig, settings: Settings, components: Components
) -> None:
    if not governance_active(settings):
        return
    from lanewise.governance.api import build_router
    from lanewise.governance.scopes import RouteScopes
    from litestar.middleware import DefineMiddleware

    governance = governance_for(settings)
    app_config.route_handlers.append(build_router(governance))
    # After core's middleware (appended before this hook runs): the caller is known.
    app_config.middleware.append(DefineMiddleware(RouteScopes, governance=governance))


@hookimpl
def lanewise_register_health_checks(register: Register, components: Components) -> None:
    settings = components.settings
    if settings.section(GovernanceSettings).store != "redis" or not governance_active(settings):
        return
    from lanewise.governance.health import StoreHealth

    register(
        "governance-store",
        lambda: StoreHealth(governance_for(settings)),
        description="the Redis that holds budget counters and rate limits is reachable",
    )


@hookimpl
def lanewise_configure_cli(cli: click.Group) -> None:
    from lanewise.governance.cli import budgets, keys

    cli.add_command(keys)
    cli.add_command(budgets)


@hookimpl
def lanewise_collect_state(components: Components) -> list[StateSample]:
    settings = components.settings
    if not governance_active(settings):
        return []
    from lanewise.governance.refusals import refusal_state

    section = settings.section(GovernanceSettings)
    configured = {(b.scope, "budget") for b in section.budgets if not b.shadow}
    configured |= {(r.scope, "rate_limit") for r in section.rate_limits if not r.shadow}
    return refusal_state(configured)
