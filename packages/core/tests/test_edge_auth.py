"""401 names its scheme, and repeated failures from one address are slowed (issue 8, item 8)."""

from __future__ import annotations

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


def test_the_failure_table_is_bounded():
    from lanewise.core.gateway.auth_throttle import AuthFailureThrottle

    throttle = AuthFailureThrottle(limit=1, window_s=60, max_addresses=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._failures) == 100
    throttle.check("10.0.0.0")  # forgotten first: no longer blocked
