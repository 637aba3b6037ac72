"""``pool``: one model name served by named pools of replicas.

``interactive`` traffic goes to the ``interactive`` pool (warm, on-demand);
``batch`` traffic to the ``batch`` pool (spot), and to ``interactive`` only
when ``spill_to_interactive = true`` or when no ``batch`` pool is configured.
Priority comes from the principal (the API key, lowered per request with
``x-lanewise-priority``). Within a pool: :func:`~lanewise.inference.pools.balancer.pick`.
A replica fault before the first token is retried once on another replica;
after it, the error reaches the client as the stream's error event, except for
non-streaming batch requests, which are buffered and so retried even when the
replica dies mid-generation (a preempted spot instance).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

from lanewise.core.errors import (
    ConfigError,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from lanewise.core.factory import FactoryContext
from lanewise.core.options import Options
from lanewise.core.protocols import ChatBackend, OutputLimited
from lanewise.core.settings import ComponentConfig
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest
from lanewise.inference.completion import collect
from lanewise.inference.pools.balancer import Replica, pick
from lanewise.inference.pools.breaker import CircuitBreaker
from lanewise.inference.pools.state import remember

# Faults of the replica (count against its breaker, retried before the first token);
# anything else (a bad request, a cancellation) says nothing about the replica's health.
REPLICA_FAULTS: tuple[type[BaseException], ...] = (
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
    ConnectionError,
    OSError,
)
POOL_NAMES = ("interactive", "batch")
OPTIONS = {"pools", "spill_to_interactive", "breaker", "max_tokens", "seed"}
POOL_OPTIONS = {"replicas", "warm", "spot"}


class Pool:
    def __init__(self, name: str, replicas: list[Replica], *, warm: bool, spot: bool) -> None:
        self.name = name
        self.replicas = replicas
        self.warm = warm
        self.spot = spot


class PoolBackend:
    def __init__(
        self,
        pools: dict[str, Pool],
        *,
        spill_to_interactive: bool = False,
        max_output_tokens: int | None = None,
        rng: random.Random | None = None,
        name: str = "pool",
    ) -> None:
        if "interactive" not in pools:
            raise ConfigError("a pool model needs an 'interactive' pool")
        self.name = name
        self.pools = pools
        self.spill_to_interactive = spill_to_interactive
        self.max_output_tokens = max_output_tokens
        self.rng = rng or random.Random()

    def describe(self) -> dict[str, Any]:
        return {
            "owned_by": "lanewise",
            "lanewise": {
                "kind": "pool",
                "max_tokens": self.max_output_tokens,
                "spill_to_interactive": self.spill_to_interactive,
                "pools": {
                    p.name: {
                        "warm": p.warm,
                        "spot": p.spot,
                        "replicas": {r.name: r.breaker.state for r in p.replicas},
                    }
                    for p in self.pools.values()
                },
            },
        }

    def pools_for(self, priority: str) -> list[Pool]:
        if priority == "batch" and "batch" in self.pools:
            order = [self.pools["batch"]]
            if self.spill_to_interactive:
                order.append(self.pools["interactive"])
            return order
        return [self.pools["interactive"]]

    def choose(self, pools: list[Pool], exclude: frozenset[str]) -> Replica | None:
        for pool in pools:
            replica = pick(pool.replicas, self.rng, exclude)
            if replica is not None:
                return replica
        return None

    def _unavailable(self, request: ChatRequest, pools: list[Pool]) -> Unavailable:
        replicas = [r for p in pools for r in p.replicas]
        waits = [r.breaker.retry_after_s() for r in replicas]
        return Unavailable(
            f"no healthy replica for model {request.model!r} in pool(s) "
            f"{', '.join(p.name for p in pools)}; retry after the breakers' reset",
            retry_after_s=max(1.0, min(waits, default=1.0)),
            model=request.model,
            priority=request.principal.priority,
            breakers={r.name: r.breaker.state for r in replicas},
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        pools = self.pools_for(request.principal.priority)
        # A batch request nobody watches token by token is buffered, so a spot
        # replica preempted mid-generation can be retried elsewhere from scratch.
        buffer = request.principal.priority == "batch" and not request.stream
        tried: set[str] = set()
        while True:
            replica = self.choose(pools, frozenset(tried))
            if replica is None or not replica.breaker.allow():
                if replica is not None:  # lost a race for the last probe slot
                    tried.add(replica.name)
                    continue
                raise self._unavailable(request, pools)
            tried.add(replica.name)
            started = False
            replica.outstanding += 1
            replica.served += 1
            verdict: bool | None = None
            buffered: list[ChatChunk] | None = [] if buffer else None
            try:
                chunks = replica.backend.stream(request)
                try:
                    async for chunk in chunks:
                        if buffered is not None:
                            buffered.append(chunk)
                        else:
                            started = True
                            yield chunk
                finally:
                    closer = getattr(chunks, "aclose", None)
                    if closer is not None:
                        await closer()
                verdict = True
            except REPLICA_FAULTS:
                verdict = False
                if started or len(tried) > 1:
                    raise
            finally:
                replica.outstanding -= 1
                if verdict is True:
                    replica.breaker.record_success()
                elif verdict is False:
                    replica.breaker.record_failure()
                else:
                    replica.breaker.release()
            if verdict:
                for chunk in buffered or ():
                    yield chunk
                return

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        return await collect(request.model, self.stream(request))

    async def aclose(self) -> None:
        for pool in self.pools.values():
            for replica in pool.replicas:
                closer = getattr(replica.backend, "aclose", None)
                if closer is not None:
                    await closer()


def build_pool(ctx: FactoryContext) -> PoolBackend:
    prefix = ctx.key
    opts = ctx.read(OPTIONS)
    breaker_opts = Options(
        f"{prefix}.breaker",
        opts.mapping("breaker"),
        {"failure_threshold", "reset_after_s", "half_open_max"},
    )
    threshold = breaker_opts.integer("failure_threshold", 3, minimum=1)
    reset_after = breaker_opts.number("reset_after_s", 5.0)
    half_open = breaker_opts.integer("half_open_max", 1, minimum=1)
    raw_pools = opts.mapping("pools")
    unknown = sorted(set(raw_pools) - set(POOL_NAMES))
    if unknown or "interactive" not in raw_pools:
        raise ConfigError(
            f"{prefix}.pools must name 'interactive' (required) and optionally 'batch'; "
            f"got {', '.join(sorted(raw_pools)) or 'none'}"
        )
    pools: dict[str, Pool] = {}
    limits: list[int] = []
    for pool_name, raw in raw_pools.items():
        popts = Options(f"{prefix}.pools.{pool_name}", raw, POOL_OPTIONS)
        specs = popts.options.get("replicas")
        if not isinstance(specs, list) or not specs:
            raise ConfigError(
                f"{prefix}.pools.{pool_name}.replicas must be a non-empty list of backend tables"
            )
        replicas = []
        for i, spec in enumerate(specs):
            key = f"{prefix}.pools.{pool_name}.replicas[{i}]"
            if not isinstance(spec, dict) or "kind" not in spec or spec["kind"] == "pool":
                raise ConfigError(f"{key} must be a table with a backend kind (not 'pool')")
            spec = dict(spec)
            replica_name = str(spec.pop("name", f"{pool_name}-{i}"))
            backend = ctx.components.build("backend", ComponentConfig(**spec), key)
            if not isinstance(backend, ChatBackend):
                raise ConfigError(f"{key}: kind {spec['kind']!r} is not a chat backend")
            if isinstance(backend, OutputLimited) and backend.max_output_tokens is not None:
                limits.append(backend.max_output_tokens)
            replicas.append(
                Replica(
                    name=replica_name,
                    backend=backend,
                    breaker=CircuitBreaker(
                        failure_threshold=threshold,
                        reset_after_s=reset_after,
                        half_open_max=half_open,
                    ),
                )
            )
        pools[pool_name] = Pool(
            pool_name,
            replicas,
            warm=popts.flag("warm", pool_name == "interactive"),
            spot=popts.flag("spot", pool_name == "batch"),
        )
    seed = opts.options.get("seed")
    max_tokens = opts.options.get("max_tokens")
    backend = PoolBackend(
        pools,
        spill_to_interactive=opts.flag("spill_to_interactive", False),
        max_output_tokens=(
            opts.integer("max_tokens", 1, minimum=1) if max_tokens else min(limits, default=None)
        ),
        rng=random.Random(opts.integer("seed", 0, minimum=0)) if seed is not None else None,
    )
    remember(ctx.components, ctx.key.removeprefix("models."), backend)
    return backend
