"""Readiness of the shared counters (``/readyz``, ``lanewise doctor``)."""

from __future__ import annotations

from lanewise.governance.runtime import Governance
from lanewise.governance.store import StoreUnavailable


class StoreHealth:
    """Not ready while Redis is unreachable and some budget fails closed.

    With every budget failing open the gateway still serves (on local limits), so
    it stays ready and the outage is only logged.
    """

    name = "governance-store"

    def __init__(self, governance: Governance) -> None:
        self.governance = governance

    async def check(self) -> str | None:
        try:
            await self.governance.governor.accounting.store.needs_rebuild()
        except StoreUnavailable as exc:
            settings = self.governance.settings
            if "closed" in (settings.on_outage_cost, settings.on_outage_tokens):
                return f"budget store unreachable ({exc}); fail-closed budgets refuse calls"
        return None
