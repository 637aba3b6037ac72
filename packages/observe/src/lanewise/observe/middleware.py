"""The summary line of a request no route took (404, 405).

Every routed request is seen through core's request observers
(:meth:`~lanewise.observe.telemetry.Telemetry.request_started` / ``request_ended``).
Litestar's router refuses a path or method no route takes before any route
middleware runs, so core's middleware never sees those: Litestar's outer exception
handler calls this hook on the way to the problem response, and nothing else on
the success path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lanewise.core.context import SCOPE_CONTEXT
from lanewise.core.gateway.middleware import request_id_from
from lanewise.observe.telemetry import OBSERVED_PREFIX, Telemetry, count_drop
from litestar.exceptions import MethodNotAllowedException, NotFoundException

UNROUTED_SLUGS = {404: "not-found", 405: "method-not-allowed"}
log = logging.getLogger("lanewise.observe")


def unrouted_hook(telemetry: Telemetry) -> Callable[[Exception, Any], None]:
    """An ``after_exception`` hook: records 404/405s that no route's middleware saw."""

    def after_exception(exc: Exception, scope: Any) -> None:
        if (
            not isinstance(exc, NotFoundException | MethodNotAllowedException)
            or scope.get("type") != "http"
            or not scope["path"].startswith(OBSERVED_PREFIX)
        ):
            return
        state = scope.setdefault("state", {})
        if state.get(SCOPE_CONTEXT) is not None:
            return  # raised inside a route: core's middleware saw it, the observer has it
        try:
            if not state.get("request_id"):  # the problem response reuses it
                state["request_id"] = request_id_from(scope["headers"]).decode()
            telemetry.unrouted(scope, exc.status_code, UNROUTED_SLUGS.get(exc.status_code))
        except Exception:
            count_drop("internal")
            log.warning("telemetry could not record %s", scope.get("path"), exc_info=True)

    return after_exception
