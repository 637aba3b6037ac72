"""API keys: ``lw_<id>_<secret>``, stored as SHA-256 only, shown once.

The id is public (lists, logs, ``key`` budgets); the secret is 256 random bits.
A replica trusts a looked-up key for ``governance.key_cache_s`` seconds, so a
revocation reaches every replica within that delay (at once on the one that
revoked it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from lanewise.core.errors import NotFound, Unauthorized
from lanewise.core.types import Principal, Priority
from lanewise.governance import tables
from sqlalchemy import Engine, insert, select, update

PREFIX = "lw_"
_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def new_secret_key() -> tuple[str, str]:
    """``(key_id, key)``: the key is returned to its owner once and never stored."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Scopes:
    """What a key may do; an empty list allows everything of that kind."""

    routes: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    admin: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scopes:
        return cls(
            routes=tuple(data.get("routes", ())),
            models=tuple(data.get("models", ())),
            priorities=tuple(data.get("priorities", ())),
            admin=bool(data.get("admin", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "routes": list(self.routes),
            "models": list(self.models),
            "priorities": list(self.priorities),
            "admin": self.admin,
        }

    def allows_route(self, path: str) -> bool:
        return not self.routes or any(fnmatchcase(path, pattern) for pattern in self.routes)

    def allows_model(self, model: str) -> bool:
        return not self.models or any(fnmatchcase(model, pattern) for pattern in self.models)

    def allows_priority(self, priority: str) -> bool:
        return not self.priorities or priority in self.priorities


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    user: str | None
    workflow: str | None
    priority: Priority
    scopes: Scopes
    name: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    sha256: str = field(repr=False, default="")

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def principal(self) -> Principal:
        return _principal(self.tenant, self.user, self.id, self.workflow, self.priority)

    def public(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tenant": self.tenant,
            "user": self.user,
            "workflow": self.workflow,
            "priority": self.priority,
            "scopes": self.scopes.to_json(),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "status": self.status(now),
        }


@lru_cache(maxsize=4096)
def _principal(
    tenant: str, user: str | None, key_id: str, workflow: str | None, priority: Priority
) -> Principal:
    # Principals are frozen: one per key serves every request it authenticates.
    return Principal(tenant=tenant, user=user, key_id=key_id, workflow=workflow, priority=priority)


def _row_to_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        tenant=row.tenant,
        user=row.user,
        workflow=row.workflow,
        priority=row.priority,
        scopes=Scopes.from_json(row.scopes or {}),
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        sha256=row.sha256,
    )


class KeyStore:
    def __init__(self, engine: Engine, *, cache_s: float = 2.0) -> None:
        self.engine = engine
        self.cache_s = cache_s
        self._cache: dict[str, tuple[ApiKey | None, float]] = {}

    def create(
        self,
        *,
        tenant: str,
        user: str | None = None,
        workflow: str | None = None,
        priority: Priority = "interactive",
        scopes: Scopes | None = None,
        name: str = "",
        expires_at: float | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key and return it with its secret (the only time it is known)."""
        key_id, secret = new_secret_key()
        row = {
            "id": key_id,
            "sha256": digest(secret),
            "tenant": tenant,
            "user": user,
            "workflow": workflow,
            "priority": priority,
            "scopes": (scopes or Scopes()).to_json(),
            "name": name,
            "created_at": time.time(),
            "expires_at": expires_at,
            "revoked_at": None,
        }
        with self.engine.begin() as connection:
            connection.execute(insert(tables.api_keys), [row])
        return self.get(key_id), secret

    def get(self, key_id: str, *, tenant: str | None = None) -> ApiKey:
        t = tables.api_keys
        query = select(t).where(t.c.id == key_id)
        if tenant is not None:
            query = query.where(t.c.tenant == tenant)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise NotFound(f"API key {key_id!r} does not exist", key_id=key_id)
        return _row_to_key(row)

    def list(self, *, tenant: str | None = None) -> list[ApiKey]:
        t = tables.api_keys
        query = select(t).order_by(t.c.tenant, t.c.created_at)
        if tenant is not None:
            query = query.where(t.c.tenant == tenant)
        with self.engine.connect() as connection:
            return [_row_to_key(row) for row in connection.execute(query)]

    def revoke(self, key_id: str, *, tenant: str | None = None) -> ApiKey:
        key = self.get(key_id, tenant=tenant)
        t = tables.api_keys
        with self.engine.begin() as connection:
            connection.execute(
                update(t)
                .where(t.c.id == key_id, t.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        self._cache.pop(key_id, None)
        return self.get(key.id)

    def cached(self, key_id: str) -> ApiKey | None:
        """The key as this replica last authenticated it (None: not an ``lw_`` key)."""
        found = self._cache.get(key_id)
        return found[0] if found is not None else None

    def authenticate(self, token: str, sha256: str | None = None) -> ApiKey:
        """The active key ``token`` is (``sha256``: its digest, when the caller has it),
        or :class:`Unauthorized` saying why not."""
        key_id, _, secret = token.removeprefix(PREFIX).partition("_")
        if not token.startswith(PREFIX) or not key_id or not secret:
            raise Unauthorized("the API key is not valid")
        now = time.time()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[1] < self.cache_s:
            key = cached[0]
        else:
            try:
                key = self.get(key_id)
            except NotFound:
                key = None
            self._cache[key_id] = (key, now)
        if key is None or not hmac.compare_digest(sha256 or digest(token), key.sha256):
            raise Unauthorized("the API key is not valid")
        status = key.status(now)
        if status != "active":
            raise Unauthorized(f"the API key {key.id} is {status}; ask your admin for a new one")
        return key
