"""What a call costs: tokens at the model's price, or GPU time at its pool's price."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lanewise.governance.budgets import NANO_PER_USD
from lanewise.governance.settings import GovernanceSettings, ModelPrice


@dataclass(frozen=True, slots=True)
class Rates:
    """Integer nano-USD rates, so reservation and settlement add up exactly."""

    input_per_token: int
    output_per_token: int
    gpu_per_s: int
    reserve_gpu_s: float

    @property
    def free(self) -> bool:
        """A free model is never held or refused by a cost budget."""
        return not (self.input_per_token or self.output_per_token or self.gpu_per_s)

    @property
    def gpu_base(self) -> int:
        return math.ceil(self.gpu_per_s * self.reserve_gpu_s)

    def cost(self, prompt_tokens: int, completion_tokens: int, gpu_s: float) -> int:
        gpu = math.ceil(self.gpu_per_s * gpu_s) if self.gpu_per_s else 0
        return (
            prompt_tokens * self.input_per_token + completion_tokens * self.output_per_token + gpu
        )


FREE = Rates(0, 0, 0, 0.0)


def _per_token(per_million_usd: float) -> int:
    return math.ceil(per_million_usd * NANO_PER_USD / 1_000_000)


def rates_for(settings: GovernanceSettings, model: str) -> Rates:
    price: ModelPrice | None = settings.price(model)
    if price is None:
        return FREE
    hourly = settings.pools.get(price.pool, 0.0) if price.pool else 0.0
    return Rates(
        input_per_token=_per_token(price.input_per_million),
        output_per_token=_per_token(price.output_per_million),
        gpu_per_s=math.ceil(hourly * NANO_PER_USD / 3600),
        reserve_gpu_s=settings.gpu_reserve_s,
    )
