"""Liveness (``/healthz``) and readiness (``/readyz``) endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

from lanewise.core.factory import Components
from lanewise.core.protocols import HealthCheck
from litestar import Response, get
from litestar.di import NamedDependency

READY_CHECK_TIMEOUT_S = 2.0


async def run_checks(checks: list[HealthCheck]) -> dict[str, str | None]:
    """Run every check concurrently under a timeout; name -> None when healthy, else why not."""

    async def one(check: HealthCheck) -> str | None:
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
                return await check.check()
        except TimeoutError:
            return f"no answer within {READY_CHECK_TIMEOUT_S:g}s"
        except Exception as exc:  # a failing check is a result, not a crash
            return f"{type(exc).__name__}: {exc}"

    results = await asyncio.gather(*(one(c) for c in checks))
    return {c.name: r for c, r in zip(checks, results, strict=True)}


def readiness_checks(components: Components) -> list[HealthCheck]:
    """Registered checks plus every configured backend that can check itself."""
    checks: list[HealthCheck] = list(components.health_checks())
    for model, backend in components.backends().items():
        if isinstance(backend, HealthCheck):
            checks.append(_Named(f"model:{model}", backend))
    return checks


class _Named:
    def __init__(self, name: str, inner: HealthCheck) -> None:
        self.name = name
        self._inner = inner

    async def check(self) -> str | None:
        return await self._inner.check()


@get("/healthz", include_in_schema=True, tags=["health"], sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@get("/readyz", tags=["health"])
async def readyz(components: NamedDependency[Components]) -> Response[dict[str, Any]]:
    """Every configured backend and store is reachable; 503 names the ones that are not."""
    results = await run_checks(readiness_checks(components))
    failing = {name: why for name, why in results.items() if why is not None}
    body = {
        "status": "ready" if not failing else "not ready",
        "checks": {name: (why or "ok") for name, why in results.items()},
        "failing": sorted(failing),
    }
    return Response(body, status_code=200 if not failing else 503)
