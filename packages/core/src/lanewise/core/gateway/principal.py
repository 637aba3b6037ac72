"""Who is calling, as route handlers of every lane read it.

The gateway middleware authenticates ``/v1`` requests and stores the
:class:`~lanewise.core.types.Principal` as Litestar's ``request.user``; lanes
call :func:`principal_of` (never the body) to learn the tenant.
"""

from __future__ import annotations

from typing import Any

import msgspec
from lanewise.core.errors import InvalidRequest
from lanewise.core.types import ANONYMOUS, Principal, Priority
from litestar import Request

PRIORITY_HEADER = "x-lanewise-priority"
_PRIORITY_RANK: dict[str, int] = {"batch": 0, "interactive": 1}


def request_id(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def authenticated(request: Request[Any, Any, Any]) -> Principal:
    """The authenticated caller (anonymous outside ``/v1``, where nothing authenticates)."""
    user = request.scope.get("user")
    return user if isinstance(user, Principal) else ANONYMOUS


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """The caller, with the priority asked for in ``x-lanewise-priority`` when the key allows it.

    A key's priority is a ceiling: an interactive key may send batch work, a
    batch key can never jump the queue.
    """
    principal = authenticated(request)
    asked = request.headers.get(PRIORITY_HEADER)
    if asked is None:
        return principal
    asked = asked.strip().lower()
    if asked not in _PRIORITY_RANK:
        raise InvalidRequest(
            f"{PRIORITY_HEADER} must be one of: {', '.join(_PRIORITY_RANK)}",
            field=PRIORITY_HEADER,
        )
    if _PRIORITY_RANK[asked] > _PRIORITY_RANK[principal.priority]:
        raise InvalidRequest(
            f"{PRIORITY_HEADER}: {asked!r} is above what this API key allows "
            f"({principal.priority!r}); send {principal.priority!r} or omit the header",
            field=PRIORITY_HEADER,
            allowed=[
                p for p, r in _PRIORITY_RANK.items() if r <= _PRIORITY_RANK[principal.priority]
            ],
        )
    priority: Priority = "batch" if asked == "batch" else "interactive"
    return msgspec.structs.replace(principal, priority=priority)
