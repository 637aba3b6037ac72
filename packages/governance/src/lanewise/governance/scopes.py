"""Route and priority scopes of ``lw_`` keys, checked before any handler runs."""

from __future__ import annotations

from typing import Any

from lanewise.core.types import Principal
from lanewise.governance.errors import OutOfScope
from lanewise.governance.runtime import ADMIN_KEY_PREFIX, Governance
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

PRIORITY_HEADER = "x-lanewise-priority"
ADMIN_ROUTES = ("/v1/admin/", "/v1/budgets")
_PRIORITY = PRIORITY_HEADER.encode()


class RouteScopes:
    """``DefineMiddleware(RouteScopes, governance=...)``, inside core's auth middleware.

    A plain ASGI middleware rather than a Litestar guard: Litestar copies the route
    handler for every guard call, which cost more than the check itself.
    """

    def __init__(self, app: ASGIApp, *, governance: Governance) -> None:
        self.app = app
        self.governance = governance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            self.check(scope)
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> None:
        principal = _principal(scope)
        key_id = principal.key_id if principal is not None else None
        if not key_id:
            return
        path = scope["path"]
        if key_id.startswith(ADMIN_KEY_PREFIX):
            if not path.startswith(ADMIN_ROUTES):
                raise OutOfScope("admin keys manage keys and budgets; call models with an API key")
            return
        key = self.governance.keys.cached(key_id)
        if key is None:
            return
        if not key.scopes.allows_route(path) and not path.startswith("/v1/budgets"):
            raise OutOfScope(
                f"API key {key.id} may not call {path}; "
                f"it may call: {', '.join(key.scopes.routes)}",
                route=path,
            )
        asked = _header(scope, _PRIORITY, key.priority).strip().lower()
        if not key.scopes.allows_priority(asked):
            raise OutOfScope(
                f"API key {key.id} may not send {PRIORITY_HEADER}: {asked}; "
                f"it may send: {', '.join(key.scopes.priorities)}",
                priority=asked,
            )


def _principal(scope: Scope) -> Principal | None:
    user = scope.get("user")
    if isinstance(user, Principal):
        return user
    found = scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else None


def _header(scope: Scope, name: bytes, default: str) -> str:
    headers: Any = scope["headers"]
    for key, value in headers:
        if key == name:
            return str(value.decode("latin-1"))
    return default
