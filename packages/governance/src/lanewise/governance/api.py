"""HTTP: ``/v1/admin/keys``, ``/v1/admin/budgets`` (admin keys) and ``GET /v1/budgets``.

An admin is either a deployment admin (``[[governance.admin_keys]]`` without a
tenant: every tenant) or a tenant admin (an admin key with a tenant, or an
``lw_`` key with the ``admin`` scope): it sees and changes its own tenant only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import msgspec
from lanewise.core.errors import InvalidRequest, NotFound
from lanewise.core.types import Principal
from lanewise.governance.budgets import Budget, applicable, from_amount, to_amount
from lanewise.governance.errors import OutOfScope
from lanewise.governance.governor import budget_body
from lanewise.governance.keys import Scopes
from lanewise.governance.runtime import ADMIN_KEY_PREFIX, Governance
from lanewise.governance.settings import EACH, Scope, Unit, Window
from litestar import Request, Router, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The authenticated caller (core's auth sets it as the connection's user)."""
    user = connection.scope.get("user")
    if isinstance(user, Principal):
        return user
    found = connection.scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else None


def admin_tenant(governance: Governance, principal: Principal | None) -> str | None:
    """The tenant an admin may manage (None: every tenant); 403 for non-admins."""
    key_id = principal.key_id if principal else None
    if principal is not None and key_id and key_id.startswith(ADMIN_KEY_PREFIX):
        return None if principal.tenant == EACH else principal.tenant
    key = governance.keys.cached(key_id) if key_id else None
    if principal is not None and key is not None and key.scopes.admin:
        return principal.tenant
    raise OutOfScope("this route needs an admin key; ask your lanewise operator for one")


def _own_tenant(asked: str | None, allowed: str | None) -> str:
    if allowed is None:
        if not asked:
            raise InvalidRequest("name the tenant", field="tenant")
        return asked
    if asked not in (None, allowed):
        raise OutOfScope(f"a tenant admin of {allowed!r} cannot manage tenant {asked!r}")
    return allowed


class KeyIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tenant: str | None = None
    user: str | None = None
    workflow: str | None = None
    priority: Literal["interactive", "batch"] = "interactive"
    name: str = ""
    routes: list[str] = msgspec.field(default_factory=list)
    models: list[str] = msgspec.field(default_factory=list)
    priorities: list[str] = msgspec.field(default_factory=list)
    admin: bool = False
    expires_in_s: float | None = None


class BudgetIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    scope: Scope
    subject: str
    limit: float
    window: Window = "day"
    unit: Unit = "tokens"
    shadow: bool = False
    tenant: str | None = None


def _budget_tenant(body: BudgetIn, allowed: str | None, governance: Governance) -> str | None:
    """The tenant that owns the budget; a tenant admin only budgets its own subjects."""
    if body.scope == "request" or body.subject == EACH:
        if allowed is not None:
            raise OutOfScope("only a deployment admin sets budgets for every subject ('*')")
        return body.tenant
    if body.scope == "tenant":
        return _own_tenant(body.subject, allowed)
    if body.scope == "key":
        key = governance.keys.get(body.subject, tenant=allowed)
        return key.tenant
    tenant, _, rest = body.subject.partition("/")
    if not rest:
        raise InvalidRequest(
            f"a {body.scope} budget names its subject as '<tenant>/<{body.scope}>'",
            field="subject",
        )
    return _own_tenant(tenant, allowed)


def build_router(governance: Governance) -> Router:
    def need_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        connection.scope.setdefault("state", {})["admin_tenant"] = admin_tenant(
            governance, principal_of(connection)
        )

    def allowed_tenant(request: Request[Any, Any, Any]) -> str | None:
        found: str | None = request.scope["state"]["admin_tenant"]
        return found

    @post("/keys", status_code=201)
    async def create_key(request: Request[Any, Any, Any], data: JSONBody[KeyIn]) -> dict[str, Any]:
        tenant = _own_tenant(data.tenant, allowed_tenant(request))
        if data.admin and allowed_tenant(request) is not None and tenant != allowed_tenant(request):
            raise OutOfScope("a tenant admin creates admin keys for its own tenant only")
        key, secret = await asyncio.to_thread(
            governance.keys.create,
            tenant=tenant,
            user=data.user,
            workflow=data.workflow,
            priority=data.priority,
            scopes=Scopes(
                routes=tuple(data.routes),
                models=tuple(data.models),
                priorities=tuple(data.priorities),
                admin=data.admin,
            ),
            name=data.name,
            expires_at=time.time() + data.expires_in_s if data.expires_in_s else None,
        )
        return {**key.public(time.time()), "key": secret}

    @get("/keys")
    async def list_keys(
        request: Request[Any, Any, Any], tenant: FromQuery[str | None] = None
    ) -> dict[str, Any]:
        allowed = allowed_tenant(request)
        scope = allowed if allowed is not None else tenant
        if allowed is not None and tenant not in (None, allowed):
            raise OutOfScope(f"a tenant admin of {allowed!r} cannot list tenant {tenant!r}")
        keys = await asyncio.to_thread(governance.keys.list, tenant=scope)
        now = time.time()
        return {"data": [k.public(now) for k in keys]}

    @delete("/keys/{key_id:str}", status_code=200)
    async def revoke_key(request: Request[Any, Any, Any], key_id: FromPath[str]) -> dict[str, Any]:
        key = await asyncio.to_thread(
            governance.keys.revoke, key_id, tenant=allowed_tenant(request)
        )
        return key.public(time.time())

    @put("/budgets")
    async def set_budget(
        request: Request[Any, Any, Any], data: JSONBody[BudgetIn]
    ) -> dict[str, Any]:
        tenant = _budget_tenant(data, allowed_tenant(request), governance)
        if data.limit < 0:
            raise InvalidRequest("limit must be zero or more", field="limit")
        budget = Budget(
            scope=data.scope,
            subject=data.subject,
            window=data.window,
            unit=data.unit,
            limit=to_amount(data.unit, data.limit),
            shadow=data.shadow,
            tenant=tenant,
        )
        await governance.set_budget(budget)
        return _budget_out(budget)

    @get("/budgets")
    async def list_budgets(request: Request[Any, Any, Any]) -> dict[str, Any]:
        budgets = await asyncio.to_thread(governance.ledger.budgets, tenant=allowed_tenant(request))
        return {"data": [_budget_out(b) for b in budgets]}

    @delete("/budgets/{budget_id:str}", status_code=200)
    async def delete_budget(
        request: Request[Any, Any, Any], budget_id: FromPath[str]
    ) -> dict[str, Any]:
        deleted = await asyncio.to_thread(
            governance.ledger.delete_budget, budget_id, tenant=allowed_tenant(request)
        )
        if not deleted:
            raise NotFound(f"budget {budget_id!r} does not exist", budget_id=budget_id)
        governance.catalogue.reload()
        return {"id": budget_id, "deleted": True}

    admin = Router(
        path="/v1/admin",
        route_handlers=[create_key, list_keys, revoke_key, set_budget, list_budgets, delete_budget],
        guards=[need_admin],
        tags=["governance"],
        # /schema: a malformed body, a key that is no admin key, an unknown key or budget.
        opt={"errors": (400, 403, 404)},
    )

    @get("/v1/budgets", tags=["governance"])
    async def my_budgets(request: Request[Any, Any, Any]) -> dict[str, Any]:
        """The budgets that apply to the caller: limit, used, remaining, reset."""
        principal = principal_of(request)
        if principal is None:
            return {"data": []}
        now = time.time()
        budgets = await governance.catalogue.fresh()
        counters = applicable(budgets, principal, "", now)
        counters = [c for c in counters if c.budget.scope != "request"]
        usage = await governance.governor.accounting.usage(counters, now)
        return {
            "data": [
                budget_body(c, settled + reserved, now)
                for c, (settled, reserved) in zip(counters, usage, strict=True)
            ]
        }

    return Router(path="/", route_handlers=[admin, my_budgets])


def _budget_out(budget: Budget) -> dict[str, Any]:
    return {
        "id": budget.id,
        "tenant": budget.tenant,
        "scope": budget.scope,
        "subject": budget.subject,
        "window": budget.window,
        "unit": "usd" if budget.unit == "cost" else "tokens",
        "limit": from_amount(budget.unit, budget.limit),
        "shadow": budget.shadow,
    }
