"""The lane's parts, built once per process from the settings."""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from lanewise.core.errors import ConfigError
from lanewise.core.types import Principal
from lanewise.governance.accounting import Accounting
from lanewise.governance.budgets import Budget
from lanewise.governance.catalogue import Catalogue
from lanewise.governance.governor import Governor
from lanewise.governance.keys import PREFIX, KeyStore, digest
from lanewise.governance.ledger import Ledger, default_url
from lanewise.governance.settings import EACH, GovernanceSettings
from lanewise.governance.store import CounterStore, MemoryStore, StoreUnavailable

log = logging.getLogger("lanewise.governance")


ADMIN_KEY_PREFIX = "admin:"
"""``Principal.key_id`` of a ``[[governance.admin_keys]]`` caller."""


@dataclass
class Governance:
    settings: GovernanceSettings
    ledger: Ledger
    keys: KeyStore
    catalogue: Catalogue
    governor: Governor
    closed: bool = False

    async def set_budget(self, budget: Budget) -> None:
        """Store a budget; its counters start from what the window has already spent."""
        accounting = self.governor.accounting
        try:
            await accounting.seed(budget)
        except StoreUnavailable:
            log.error("governance: budget %s set while the store is unreachable", budget.id)
        await asyncio.to_thread(self.ledger.set_budget, budget)
        await asyncio.to_thread(self.catalogue.reload)

    def resolve(self, token: str | None) -> Principal | None:
        """The caller a bearer token names: an admin key, an ``lw_`` key, or None (pass)."""
        if not token:
            return None
        sha = digest(token)
        for admin in self.settings.admin_keys:
            if hmac.compare_digest(sha, admin.sha256):
                return Principal(tenant=admin.tenant or EACH, key_id=ADMIN_KEY_PREFIX + sha[:12])
        if token.startswith(PREFIX):
            return self.keys.authenticate(token, sha).principal()
        return None

    async def aclose(self) -> None:
        self.closed = True
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
    request_timeout_s: float | None = None,
) -> Governance:
    if request_timeout_s is not None and settings.reservation_ttl_s <= request_timeout_s:
        # A hold that expires while its call can still run would let others spend its room.
        log.warning(
            "governance.reservation_ttl_s = %gs is not above gateway.request_timeout_s = %gs; "
            "using %gs",
            settings.reservation_ttl_s,
            request_timeout_s,
            request_timeout_s + 1,
        )
        settings = settings.model_copy(update={"reservation_ttl_s": request_timeout_s + 1})
    ledger = open_ledger(ledger_url(settings, data_dir, database_url))
    catalogue = Catalogue(settings, ledger)
    catalogue.reload()
    ttl = settings.reservation_ttl_s
    store: CounterStore
    fallback: Accounting | None = None
    if settings.store == "redis":
        if not redis_url:
            raise ConfigError(
                "governance.store = 'redis' needs redis_url (e.g. redis://host:6379/0)"
            )
        from lanewise.governance.redis_store import RedisStore

        store = RedisStore(redis_url, marker_ttl_s=2 * ttl)
    else:
        store = MemoryStore(marker_ttl_s=2 * ttl)
    accounting = Accounting(store, ledger, budgets=catalogue.budgets, reservation_ttl_s=ttl)
    if settings.store == "redis":
        fallback = Accounting(
            MemoryStore(marker_ttl_s=2 * ttl),
            ledger,
            budgets=catalogue.budgets,
            reservation_ttl_s=ttl,
            shares_ledger_with=accounting,
        )
    return Governance(
        settings=settings,
        ledger=ledger,
        keys=key_store(ledger, settings.key_cache_s),
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


_key_stores: dict[int, KeyStore] = {}


def key_store(ledger: Ledger, cache_s: float) -> KeyStore:
    """One key store per ledger: the auth hook and the guard share its cache."""
    with _ledgers_lock:
        found = _key_stores.get(id(ledger))
        if found is None:
            found = _key_stores[id(ledger)] = KeyStore(ledger.engine, cache_s=cache_s)
        return found


_shared: dict[int, tuple[object, Governance]] = {}


def shared(
    settings: GovernanceSettings,
    *,
    data_dir: Path,
    redis_url: str | None,
    database_url: str | None,
    request_timeout_s: float | None = None,
    owner: object,
) -> Governance:
    """The process's Governance for one core Settings object (``owner``).

    The auth hook, the guard and the routes are separate entry points that must
    share one set of counters, keys and ledger; they find it here.
    """
    with _ledgers_lock:
        found = _shared.get(id(owner))
        if found is not None and found[0] is owner:
            return found[1]
    governance = build(
        settings,
        data_dir=data_dir,
        redis_url=redis_url,
        database_url=database_url,
        request_timeout_s=request_timeout_s,
    )
    with _ledgers_lock:
        found = _shared.get(id(owner))
        if found is not None and found[0] is owner:
            return found[1]
        _shared[id(owner)] = (owner, governance)
    return governance


def forget(owner: object) -> None:
    with _ledgers_lock:
        _shared.pop(id(owner), None)


class BudgetCounters:
    """The app's handle on its shared Governance: closes (and forgets) it with the app.

    ``single_process`` tells core that in-process counters cannot be shared by several
    worker processes (``lanewise serve --workers 2`` then asks for the Redis store).
    """

    def __init__(self, governance: Governance, *, owner: object) -> None:
        self.governance = governance
        self.owner = owner
        self.single_process = governance.settings.store == "memory"

    async def aclose(self) -> None:
        forget(self.owner)
        await self.governance.aclose()
