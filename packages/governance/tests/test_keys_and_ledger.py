"""API keys at rest and the durable ledger on SQLite and a real PostgreSQL."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from lanewise.core.errors import Unauthorized
from lanewise.core.types import Principal
from lanewise.governance import tables
from lanewise.governance.budgets import Budget, applicable
from lanewise.governance.keys import KeyStore, Scopes
from lanewise.governance.ledger import Charge, Ledger
from sqlalchemy import select


def test_keys_are_stored_as_hashes_and_shown_once(ledger: Ledger) -> None:
    keys = KeyStore(ledger.engine, cache_s=0)
    key, secret = keys.create(tenant="acme", user="ann", scopes=Scopes(models=("small",)))
    assert secret.startswith(f"lw_{key.id}_")
    assert len(secret) > 50
    with ledger.engine.connect() as connection:
        stored = [tuple(row) for row in connection.execute(select(tables.api_keys))]
    assert secret not in repr(stored)
    assert secret.split("_", 2)[2] not in repr(stored)
    assert keys.authenticate(secret).principal() == Principal(
        tenant="acme", user="ann", key_id=key.id
    )
    assert "sha256" not in key.public(time.time())


def test_wrong_revoked_and_expired_keys_are_refused(ledger: Ledger) -> None:
    keys = KeyStore(ledger.engine, cache_s=0)
    key, secret = keys.create(tenant="acme")
    with pytest.raises(Unauthorized):
        keys.authenticate(secret[:-2] + "xx")
    with pytest.raises(Unauthorized):
        keys.authenticate("lw_nosuchkey_" + "a" * 43)
    keys.revoke(key.id, tenant="acme")
    with pytest.raises(Unauthorized, match="revoked"):
        keys.authenticate(secret)
    _, short_lived = keys.create(tenant="acme", expires_at=time.time() - 1)
    with pytest.raises(Unauthorized, match="expired"):
        keys.authenticate(short_lived)


def test_a_tenant_cannot_revoke_or_see_another_tenants_keys(ledger: Ledger) -> None:
    keys = KeyStore(ledger.engine)
    theirs, _ = keys.create(tenant="globex")
    keys.create(tenant="acme")
    assert [k.tenant for k in keys.list(tenant="acme")] == ["acme"]
    with pytest.raises(Exception, match="does not exist"):
        keys.revoke(theirs.id, tenant="acme")
    assert keys.get(theirs.id).revoked_at is None


def test_scopes_match_routes_models_and_priorities() -> None:
    scopes = Scopes(routes=("/v1/chat/*",), models=("small", "rag/*"), priorities=("batch",))
    assert scopes.allows_route("/v1/chat/completions")
    assert not scopes.allows_route("/v1/embeddings")
    assert scopes.allows_model("rag/small")
    assert not scopes.allows_model("large")
    assert scopes.allows_priority("batch")
    assert not scopes.allows_priority("interactive")
    assert Scopes().allows_model("anything")


def _charge(tenant: str, tokens: int, ts: float, request_id: str = "r") -> Charge:
    return Charge(
        id=uuid.uuid4().hex,
        ts=ts,
        settled_at=ts + 1,
        request_id=request_id,
        tenant=tenant,
        user="ann",
        key_id="k1",
        workflow="wf",
        model="m",
        operation="chat",
        purpose="request",
        status="ok",
        prompt_tokens=tokens,
        completion_tokens=1,
        cost_nano=tokens * 7,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_snapshot_sums_each_window_exactly_and_records_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'l.db'}"
    )
    ledger = Ledger.open(url)
    try:
        now = time.time()
        charges = [
            _charge("acme", 10, now),
            _charge("acme", 20, now - 10),
            _charge("globex", 5, now),
            _charge("acme", 1000, now - 3 * 86_400),  # an earlier day
        ]
        ledger.record(charges)
        ledger.record(charges[:2])  # a retried batch is not counted twice
        day = Budget(scope="tenant", subject="*", window="day", unit="tokens", limit=100)
        lifetime_cost = Budget(scope="user", subject="*", window="lifetime", unit="cost", limit=1)
        snapshot = ledger.snapshot([day, lifetime_cost], now=now, recent_s=60)
        principal = Principal(tenant="acme", user="ann", key_id="k1")
        day_counter, cost_counter = applicable([day, lifetime_cost], principal, "", now)
        # (A charge made 10 s ago can sit in yesterday's bucket just after midnight.)
        assert snapshot.counters[day_counter.key][0] == ledger.spent(day, "acme", now)
        assert ledger.spent(day, "acme", now) in (11 + 21, 11)
        assert snapshot.counters[cost_counter.key][0] == (10 + 20 + 1000) * 7
        assert set(snapshot.charge_ids) == {c.id for c in charges[:3]}
        ledger.set_budget(
            Budget(
                scope="tenant", subject="acme", window="day", unit="tokens", limit=5, tenant="acme"
            )
        )
        assert [b.limit for b in ledger.budgets(tenant="acme")] == [5]
        assert ledger.budgets(tenant="globex") == []
    finally:
        ledger.close()
