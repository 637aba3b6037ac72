"""``GET /v1/usage``: the caller's own tenant's usage, grouped and windowed."""

from __future__ import annotations

from typing import Annotated, Any

from lanewise.core.errors import LanewiseError, Unavailable
from lanewise.core.types import Principal
from lanewise.observe.usage.query import WINDOW_PATTERN, GroupBy, usage_summary
from lanewise.observe.usage.store import UsageReader, UsageWriter
from litestar import Request, get
from litestar.params import FromQuery, Parameter
from sqlalchemy.exc import SQLAlchemyError


class Forbidden(LanewiseError):
    type_slug = "forbidden"
    title = "Forbidden"
    status = 403


def make_usage_route(store: UsageWriter | UsageReader) -> Any:
    # opt["errors"]: the statuses /schema documents besides 200 (see lanewise.core.gateway.openapi).
    @get("/v1/usage", tags=["usage"], sync_to_thread=True, opt={"errors": (400, 403, 503)})
    def read_usage(
        request: Request[Any, Any, Any],
        group_by: FromQuery[GroupBy] = "model",
        window: Annotated[str, Parameter(pattern=WINDOW_PATTERN)] = "24h",
        tenant: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        """Token usage (and cost, when priced) of the caller's tenant over ``window``.

        ``group_by`` is one of tenant, user, workflow, model, prompt. Naming
        another ``tenant`` is refused with 403: API keys see their own tenant only.
        """
        principal = request.scope.get("user")  # core's middleware authenticated /v1
        if not isinstance(principal, Principal):
            raise Forbidden("usage is scoped to an authenticated tenant")
        if tenant is not None and tenant != principal.tenant:
            raise Forbidden(
                f"this API key belongs to tenant {principal.tenant!r} and cannot read "
                f"tenant {tenant!r}'s usage; omit tenant or use that tenant's key",
                tenant=principal.tenant,
            )
        try:
            store.wait_ready(10)  # the schema is created by the writer at start-up
            return usage_summary(
                store.engine, tenant=principal.tenant, group_by=group_by, window=window
            )
        except SQLAlchemyError:
            raise Unavailable(
                "the usage store is unreachable; retry later (requests are served meanwhile)",
                retry_after_s=5,
            ) from None

    return read_usage
