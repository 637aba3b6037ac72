"""Pool state for telemetry (``lanewise_collect_state``): breakers and calls in flight.

``build_pool`` remembers each pool it builds under the process's components; the
hook reads them from a telemetry thread once a second. It only reads: the breaker's
``peek`` changes nothing, ``outstanding`` is an int the event loop updates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from lanewise.core.factory import Components
from lanewise.core.types import StateSample

if TYPE_CHECKING:
    from lanewise.inference.pools.router import PoolBackend

BREAKER_STATE = "lanewise_breaker_state"
POOL_IN_FLIGHT = "lanewise_pool_in_flight"
BREAKER_CODES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
BREAKER_HELP = "Circuit breaker of a pool replica: 0 closed, 1 half-open, 2 open (worst worker)"
IN_FLIGHT_HELP = "Model calls in flight on a pool replica (capacity: warm, spot or on-demand)"

_pools: WeakKeyDictionary[Components, dict[str, PoolBackend]] = WeakKeyDictionary()


def remember(components: Components, model: str, pool: PoolBackend) -> None:
    _pools.setdefault(components, {})[model] = pool


def pool_state(components: Components) -> list[StateSample]:
    samples: list[StateSample] = []
    for model, backend in list(_pools.get(components, {}).items()):
        for pool in backend.pools.values():
            capacity = "spot" if pool.spot else "warm" if pool.warm else "on-demand"
            for replica in pool.replicas:
                where = {"model": model, "pool": pool.name, "replica": replica.name}
                samples.append(
                    StateSample(
                        name=BREAKER_STATE,
                        value=BREAKER_CODES[replica.breaker.peek()],
                        labels=where,
                        help=BREAKER_HELP,
                        merge="max",
                    )
                )
                samples.append(
                    StateSample(
                        name=POOL_IN_FLIGHT,
                        value=float(replica.outstanding),
                        labels={**where, "capacity": capacity},
                        help=IN_FLIGHT_HELP,
                        merge="sum",
                    )
                )
    return samples
