"""Route and priority scopes of ``lw_`` keys, checked before any handler runs."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from lanewise.governance.api import principal_of
from lanewise.governance.errors import OutOfScope
from lanewise.governance.runtime import ADMIN_KEY_PREFIX, Governance
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

PRIORITY_HEADER = "x-lanewise-priority"
ADMIN_ROUTES = ("/v1/admin/", "/v1/budgets")


def route_scope_guard(
    governance: Governance,
) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Coroutine[Any, Any, None]]:
    # async although it awaits nothing: Litestar runs a sync guard in a worker thread,
    # a thread hop on every request for a check that only reads memory.
    async def check(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        key_id = principal.key_id if principal is not None else None
        if not key_id:
            return
        path = connection.url.path
        if key_id.startswith(ADMIN_KEY_PREFIX):
            if not path.startswith(ADMIN_ROUTES):
                raise OutOfScope("admin keys manage keys and budgets; call models with an API key")
            return
        key = governance.keys.cached(key_id)
        if key is None:
            return
        if not key.scopes.allows_route(path) and not path.startswith("/v1/budgets"):
            raise OutOfScope(
                f"API key {key.id} may not call {path}; "
                f"it may call: {', '.join(key.scopes.routes)}",
                route=path,
            )
        asked = connection.headers.get(PRIORITY_HEADER, key.priority).strip().lower()
        if not key.scopes.allows_priority(asked):
            raise OutOfScope(
                f"API key {key.id} may not send {PRIORITY_HEADER}: {asked}; "
                f"it may send: {', '.join(key.scopes.priorities)}",
                priority=asked,
            )

    return check
