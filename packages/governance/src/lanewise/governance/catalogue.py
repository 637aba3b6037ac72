"""Which budgets and rate limits exist: the file's, plus those set at run time."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from functools import lru_cache

from lanewise.core.types import Principal
from lanewise.governance.budgets import Budget
from lanewise.governance.ledger import Ledger
from lanewise.governance.settings import EACH, GovernanceSettings, RateLimitConfig
from lanewise.governance.store import RateCharge

REFRESH_S = 5.0
"""How long a replica trusts its copy of the run-time budgets (other replicas' changes)."""


@lru_cache(maxsize=1024)  # asked twice per call per rule
def rule_id(scope: str, subject: str) -> str:
    return "g_" + hashlib.sha256(f"{scope}|{subject}".encode()).hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class RateRule:
    config: RateLimitConfig

    @property
    def id(self) -> str:
        return rule_id(self.config.scope, self.config.subject)

    def subject(self, principal: Principal) -> str | None:
        scope = self.config.scope
        if scope == "tenant":
            found: str | None = principal.tenant
        elif scope == "user":
            found = f"{principal.tenant}/{principal.user}" if principal.user else None
        else:
            found = principal.key_id
        if found is None or self.config.subject not in (EACH, found):
            return None
        return found

    def charges(self, principal: Principal, *, requests: int, tokens: int) -> list[RateCharge]:
        subject = self.subject(principal)
        if subject is None:
            return []
        c = self.config
        label = f"{c.scope} {subject}"
        found = []
        if c.rpm is not None and requests:
            found.append(
                RateCharge(
                    f"{self.id}:rpm:{subject}",
                    c.rpm,
                    requests,
                    c.shadow,
                    f"RPM of {label}",
                    scope=c.scope,
                )
            )
        if c.tpm is not None:
            found.append(
                RateCharge(
                    f"{self.id}:tpm:{subject}",
                    c.tpm,
                    tokens,
                    c.shadow,
                    f"TPM of {label}",
                    scope=c.scope,
                )
            )
        return found


class Catalogue:
    def __init__(self, settings: GovernanceSettings, ledger: Ledger) -> None:
        self.ledger = ledger
        self._configured = [Budget.from_config(b) for b in settings.budgets]
        self.rate_rules = [RateRule(r) for r in settings.rate_limits]
        self._budgets = list(self._configured)
        self._loaded_at = -REFRESH_S
        self._lock = asyncio.Lock()

    def budgets(self) -> list[Budget]:
        return self._budgets

    def reload(self) -> None:
        merged = {b.id: b for b in self._configured}
        merged.update({b.id: b for b in self.ledger.budgets()})
        self._budgets = list(merged.values())
        self._loaded_at = time.monotonic()

    async def fresh(self) -> list[Budget]:
        if time.monotonic() - self._loaded_at >= REFRESH_S:
            async with self._lock:
                if time.monotonic() - self._loaded_at >= REFRESH_S:
                    await asyncio.to_thread(self.reload)
        return self._budgets
