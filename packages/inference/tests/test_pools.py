"""Pools: priority routing, spill policy, retry before the first token, 503, fairness."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import msgspec
import pytest
from lanewise.core.errors import ConfigError, Unavailable, UpstreamError
from lanewise.core.types import ChatChunk, ChatRequest, Message, Principal, Usage
from lanewise.inference.completion import collect
from lanewise.inference.pools.balancer import Replica
from lanewise.inference.pools.breaker import CircuitBreaker
from lanewise.inference.pools.router import Pool, PoolBackend


class Replay:
    """An in-process replica that answers with its name, after a seeded random delay,
    or fails the way a dead replica does (before or after its first token)."""

    def __init__(self, name, *, rng=None, fail=None, delay=0.0):
        self.name = name
        self.rng = rng
        self.fail = fail
        self.delay = delay
        self.calls = 0

    async def stream(self, request):
        self.calls += 1
        if self.fail == "before":
            raise UpstreamError(f"{self.name} is down")
        await asyncio.sleep(self.rng.random() * 0.002 if self.rng else self.delay)
        yield ChatChunk(delta=self.name)
        if self.fail == "after":
            raise UpstreamError(f"{self.name} died mid-stream")
        yield ChatChunk(finish_reason="stop", usage=Usage(completion_tokens=1))

    async def generate(self, request):
        return await collect(request.model, self.stream(request))


def request(priority="interactive"):
    return ChatRequest(
        model="m",
        messages=[Message(role="user", content="hi")],
        principal=Principal(tenant="t", priority=priority),
    )


def pool_backend(interactive, batch=None, *, spill=False, threshold=3):
    def replicas(backends):
        return [
            Replica(b.name, b, CircuitBreaker(failure_threshold=threshold, reset_after_s=30))
            for b in backends
        ]

    pools = {"interactive": Pool("interactive", replicas(interactive), warm=True, spot=False)}
    if batch is not None:
        pools["batch"] = Pool("batch", replicas(batch), warm=False, spot=True)
    return PoolBackend(pools, spill_to_interactive=spill, rng=random.Random(7))


async def test_priority_picks_the_pool():
    backend = pool_backend([Replay("warm")], [Replay("spot")])
    assert (await backend.generate(request("interactive"))).text == "warm"
    assert (await backend.generate(request("batch"))).text == "spot"


async def test_batch_spills_to_interactive_only_when_allowed():
    strict = pool_backend([Replay("warm")], [Replay("spot", fail="before")], threshold=1)
    # The spot replica fails, no other spot replica is left for the retry: 503, not a spill.
    with pytest.raises(Unavailable):
        await strict.generate(request("batch"))
    with pytest.raises(Unavailable) as info:  # its breaker is open now
        await strict.generate(request("batch"))
    assert info.value.extensions["breakers"] == {"spot": "open"}
    assert info.value.retry_after_s is not None
    spilling = pool_backend([Replay("warm")], [Replay("spot", fail="before")], spill=True)
    assert (await spilling.generate(request("batch"))).text == "warm"


async def test_failure_before_first_token_is_retried_once_elsewhere():
    dead, live = Replay("dead", fail="before"), Replay("live")
    backend = pool_backend([dead, live])
    answers = Counter([(await backend.generate(request())).text for _ in range(20)])
    assert answers == {"live": 20}
    assert dead.calls >= 1
    state = backend.describe()["lanewise"]["pools"]["interactive"]["replicas"]
    assert state["dead"] == "open"


async def test_failure_after_first_token_is_not_retried():
    backend = pool_backend([Replay("a", fail="after"), Replay("b", fail="after")])
    with pytest.raises(UpstreamError, match="mid-stream"):
        await backend.generate(request())


async def test_two_dead_replicas_give_up_after_one_retry():
    a, b, c = (Replay(n, fail="before") for n in "abc")
    backend = pool_backend([a, b, c])
    with pytest.raises(UpstreamError):
        await backend.generate(request())
    assert a.calls + b.calls + c.calls == 2


async def test_fairness_over_four_replicas():
    """Power-of-two choices keeps each replica within ±10% of its fair share."""
    rng = random.Random(42)
    replicas = [Replay(f"r{i}", rng=rng) for i in range(4)]
    backend = pool_backend(replicas)
    sem = asyncio.Semaphore(32)

    async def one():
        async with sem:
            return (await backend.generate(request())).text

    counts = Counter(await asyncio.gather(*(one() for _ in range(2000))))
    fair = 2000 / 4
    assert set(counts) == {"r0", "r1", "r2", "r3"}
    assert all(abs(n - fair) <= 0.1 * fair for n in counts.values()), counts


def test_no_healthy_replica_is_a_503_with_retry_after_and_breakers(gateway, slow_backend):
    upstream_down = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "name": "down"}
    models = {
        "m": {
            "kind": "pool",
            "breaker": {"failure_threshold": 1, "reset_after_s": 60},
            "pools": {"interactive": {"replicas": [upstream_down]}},
        }
    }
    with gateway(models=models) as base:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        first = httpx.post(f"{base}/v1/chat/completions", json=body)
        second = httpx.post(f"{base}/v1/chat/completions", json=body)
        models_list = httpx.get(f"{base}/v1/models").json()["data"]
    assert first.status_code == 503  # the replica's own error, which opened its breaker
    assert second.status_code == 503
    problem = second.json()
    assert problem["breakers"] == {"down": "open"}
    assert int(second.headers["retry-after"]) >= 1
    assert models_list[0]["lanewise"]["pools"]["interactive"]["replicas"] == {"down": "open"}


def test_pool_config_errors_name_the_key(lanewise_settings):
    from lanewise.core.gateway.app import create_app

    with pytest.raises(ConfigError, match="pools"):
        create_app(lanewise_settings(models={"m": {"kind": "pool", "pools": {"gpu": {}}}}))
    with pytest.raises(ConfigError, match=r"replicas\[0\]"):
        create_app(
            lanewise_settings(
                models={"m": {"kind": "pool", "pools": {"interactive": {"replicas": [{"x": 1}]}}}}
            )
        )


def test_pool_of_extractive_replicas_through_the_gateway(gateway):
    models = {
        "m": {
            "kind": "pool",
            "pools": {
                "interactive": {"replicas": [{"kind": "extractive"}, {"kind": "extractive"}]},
                "batch": {"replicas": [{"kind": "extractive", "max_tokens": 8}]},
            },
        }
    }
    with gateway(models=models) as base:
        body = {"model": "m", "messages": [{"role": "user", "content": "Pools route requests."}]}
        r = httpx.post(f"{base}/v1/chat/completions", json=body)
        too_long = httpx.post(f"{base}/v1/chat/completions", json={**body, "max_tokens": 9})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "Pools route requests."
    assert too_long.status_code == 400  # the pool's limit is its smallest replica's


async def test_preempted_batch_replica_is_retried_elsewhere_when_buffered():
    preempted, survivor = Replay("spot-0", fail="after"), Replay("spot-1")
    backend = pool_backend([Replay("warm")], [preempted, survivor])
    texts = Counter([(await backend.generate(request("batch"))).text for _ in range(10)])
    assert texts == {"spot-1": 10}  # never a half answer from the preempted replica
    assert preempted.calls >= 1
    streaming = msgspec.structs.replace(request("batch"), stream=True)
    backend = pool_backend([Replay("warm")], [Replay("spot-0", fail="after")])
    with pytest.raises(UpstreamError):  # a streaming client already saw tokens: no retry
        await backend.generate(streaming)


async def test_replica_killed_under_load_fails_no_request(gateway):
    """Two real upstream gateways behind a pool; one shuts down in the middle of the load."""
    from lanewise.inference.openai_compat import OpenAICompatBackend

    models = {"extractive": {"kind": "extractive"}}
    victim_cm, survivor_cm = gateway(models=models), gateway(models=models)
    bases = [victim_cm.__enter__(), survivor_cm.__enter__()]
    victim_stopped = False
    try:
        replicas = [
            Replica(
                f"up{i}",
                OpenAICompatBackend(base_url=f"{base}/v1", model="extractive"),
                CircuitBreaker(failure_threshold=2, reset_after_s=60),
            )
            for i, base in enumerate(bases)
        ]
        backend = PoolBackend(
            {"interactive": Pool("interactive", replicas, warm=True, spot=False)},
            rng=random.Random(3),
        )
        warm = [await backend.generate(request()) for _ in range(10)]
        assert {r.served > 0 for r in replicas} == {True}

        async def kill_victim():
            nonlocal victim_stopped
            await asyncio.sleep(0.05)
            await asyncio.to_thread(victim_cm.__exit__, None, None, None)
            victim_stopped = True

        sem = asyncio.Semaphore(8)

        async def one():
            async with sem:
                return await backend.generate(request())

        results = await asyncio.gather(kill_victim(), *(one() for _ in range(60)))
        after = [await backend.generate(request()) for _ in range(30)]
        for replica in replicas:
            await replica.backend.aclose()
    finally:
        survivor_cm.__exit__(None, None, None)
        if not victim_stopped:
            victim_cm.__exit__(None, None, None)
    answers = [c.text for c in [*warm, *results[1:], *after]]
    assert len(answers) == 100
    assert all(a for a in answers)  # every request answered, none failed
    assert replicas[0].breaker.state == "open"
