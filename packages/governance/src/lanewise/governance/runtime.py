"""The lane's parts, built once per process from the settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from lanewise.core.errors import ConfigError

from lanewise.governance.accounting import Accounting
from lanewise.governance.catalogue import Catalogue
from lanewise.governance.governor import Governor
from lanewise.governance.keys import KeyStore
from lanewise.governance.ledger import Ledger, default_url
from lanewise.governance.settings import GovernanceSettings
from lanewise.governance.store import CounterStore, MemoryStore


@dataclass
class Governance:
    settings: GovernanceSettings
    ledger: Ledger
    keys: KeyStore
    catalogue: Catalogue
    governor: Governor

    async def aclose(self) -> None:
        await self.governor.accounting.aclose()
        if self.governor.fallback is not None:
            await self.governor.fallback.aclose()


def ledger_url(settings: GovernanceSettings, data_dir: Path, database_url: str | None) -> str:
    return settings.ledger_url or database_url or default_url(data_dir)


def build(
    settings: GovernanceSettings,
    *,
    data_dir: Path,
    redis_url: str | None,
    database_url: str | None = None,
) -> Governance:
    ledger = open_ledger(ledger_url(settings, data_dir, database_url))
    catalogue = Catalogue(settings, ledger)
    catalogue.reload()
    ttl = settings.reservation_ttl_s
    store: CounterStore
    fallback: Accounting | None = None
    if settings.store == "redis":
        if not redis_url:
            raise ConfigError("governance.store = 'redis' needs redis_url (e.g. redis://host:6379/0)")
        from lanewise.governance.redis_store import RedisStore

        store = RedisStore(redis_url, marker_ttl_s=2 * ttl)
        fallback = Accounting(
            MemoryStore(marker_ttl_s=2 * ttl),
            ledger,
            budgets=catalogue.budgets,
            reservation_ttl_s=ttl,
        )
    else:
        store = MemoryStore(marker_ttl_s=2 * ttl)
    accounting = Accounting(store, ledger, budgets=catalogue.budgets, reservation_ttl_s=ttl)
    return Governance(
        settings=settings,
        ledger=ledger,
        keys=KeyStore(ledger.engine, cache_s=settings.key_cache_s),
        catalogue=catalogue,
        governor=Governor(settings, catalogue, accounting, fallback),
    )


_ledgers: dict[str, Ledger] = {}
_ledgers_lock = threading.Lock()


def open_ledger(url: str) -> Ledger:
    """One ledger (engine, migrated once) per URL and process: keys and guards share it."""
    with _ledgers_lock:
        ledger = _ledgers.get(url)
        if ledger is None:
            ledger = _ledgers[url] = Ledger.open(url)
        return ledger
