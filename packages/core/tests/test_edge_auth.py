"""401 names its scheme, and repeated failures from one address are slowed (issue 8, item 8)."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
from lanewise.core.auth import hash_key

KEY = "sk-edge-auth"


def client(base: str, source: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=base, transport=transport)


def test_401_carries_www_authenticate(gateway, chat):
    with gateway(gateway={"api_keys": [{"sha256": hash_key(KEY), "tenant": "t"}]}) as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=chat())
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_repeated_failures_from_one_address_get_429(gateway, chat):
    settings = {
        "api_keys": [{"sha256": hash_key(KEY), "tenant": "t"}],
        "auth_failure_limit": 5,
    }
    with gateway(gateway=settings) as base:
        with client(base) as guesser:
            # Spread over routes: the count is per address, not per route.
            wrong = [
                guesser.get("/v1/models", headers={"Authorization": f"Bearer sk-guess-{i}"})
                if i % 2
                else guesser.post(
                    "/v1/chat/completions",
                    json=chat(),
                    headers={"Authorization": f"Bearer sk-guess-{i}"},
                )
                for i in range(5)
            ]
            blocked = guesser.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        with client(base, "127.0.0.2") as other:
            elsewhere = other.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert [r.status_code for r in wrong] == [401] * 5
    assert blocked.status_code == 429
    assert blocked.headers["content-type"] == "application/problem+json"
    assert int(blocked.headers["retry-after"]) >= 1
    assert blocked.json()["limit"] == "gateway.auth_failure_limit"
    assert elsewhere.status_code == 200  # another address is not punished


async def test_the_failure_table_is_bounded():
    from lanewise.core.gateway.auth_throttle import AuthFailureThrottle

    throttle = AuthFailureThrottle(limit=1, window_s=60, max_addresses=100)
    for i in range(1000):
        await throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._failures) == 100
    throttle.check("10.0.0.0")  # forgotten first: no longer blocked


def _failures_until_blocked(bases: list[str], chat: Any, limit: int) -> int:
    """Wrong keys sent round-robin to every gateway until all of them answer 429."""
    blocked: set[str] = set()
    failures = 0
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(client(b)) for b in bases]
        for i in range(limit * len(bases) * 2):
            base, guesser = bases[i % len(bases)], clients[i % len(bases)]
            r = guesser.post(
                "/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer bad-{i}"}
            )
            if r.status_code == 401:
                failures += 1
            else:
                assert r.status_code == 429, r.text
                blocked.add(base)
            if len(blocked) == len(bases):
                return failures
    raise AssertionError(f"not every gateway blocked the address after {failures} failures")


def test_with_redis_the_failure_count_is_shared_by_replicas(gateway, chat, redis_server):
    """Two gateways (two replicas) and one Redis: the address is blocked after the shared
    limit plus at most one failure per other replica, not after the limit on each."""
    settings = {"api_keys": [{"sha256": hash_key(KEY), "tenant": "t"}], "auth_failure_limit": 6}
    shared = {"gateway": settings, "redis_url": redis_server.url}
    with gateway(**shared) as a, gateway(**shared) as b:
        failures = _failures_until_blocked([a, b], chat, limit=6)
    assert failures <= 6 + 1
    with gateway(gateway=settings) as c, gateway(gateway=settings) as d:
        alone = _failures_until_blocked([c, d], chat, limit=6)
    assert alone == 12  # without Redis each replica counts its own share


def test_a_redis_outage_falls_back_to_the_local_count(gateway, chat, redis_server):
    settings = {"api_keys": [{"sha256": hash_key(KEY), "tenant": "t"}], "auth_failure_limit": 3}
    with gateway(gateway=settings, redis_url=redis_server.url) as base:
        redis_server.kill()
        failures = _failures_until_blocked([base], chat, limit=3)
    assert failures == 3
