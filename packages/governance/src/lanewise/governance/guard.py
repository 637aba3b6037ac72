"""Budgets and rate limits as core's model-call guard ``budgets``."""

from __future__ import annotations

from lanewise.core.context import current_request
from lanewise.core.guards import CallOutcome, ModelCall, StreamStop
from lanewise.core.types import ChatChunk
from lanewise.governance.errors import OutOfScope
from lanewise.governance.governor import CallInfo, Governor, Meter
from lanewise.governance.keys import KeyStore

COST_ATTRIBUTE = "lanewise.cost_usd"


class BudgetTicket:
    __slots__ = ("meter",)

    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    def on_chunk(self, chunk: ChatChunk) -> StreamStop | None:
        reason = self.meter.on_delta(chunk.delta)
        if reason is None:
            return None
        return StreamStop(finish_reason="length", lanewise={"error": reason})

    async def settle(self, outcome: CallOutcome) -> None:
        charge = await self.meter.settle(outcome.status, outcome.usage, outcome.duration_s)
        context = current_request()
        if context is not None and charge is not None:
            # The whole request's cost so far, for usage events and the observe lane.
            spent = context.attributes.get(COST_ATTRIBUTE, 0.0)
            context.attributes[COST_ATTRIBUTE] = spent + charge.cost_nano / 1e9


class BudgetGuard:
    """Refuses out-of-scope models (403) and over-limit calls (429) before any upstream."""

    name = "budgets"

    def __init__(self, governor: Governor, keys: KeyStore) -> None:
        self.governor = governor
        self.keys = keys

    async def admit(self, call: ModelCall) -> BudgetTicket | None:
        principal = call.principal
        key = self.keys.cached(principal.key_id) if principal.key_id else None
        if key is not None and not key.scopes.allows_model(call.model):
            raise OutOfScope(
                f"API key {key.id} may not call model {call.model!r}; "
                f"it may call: {', '.join(key.scopes.models)}",
                model=call.model,
                allowed_models=list(key.scopes.models),
            )
        info = CallInfo(
            operation=call.operation,
            model=call.model,
            principal=principal,
            request_id=call.request_id,
            purpose=call.purpose,
            messages=tuple(call.request.messages) if call.request is not None else (),
            inputs=call.inputs,
            max_tokens=call.max_tokens,
        )
        return BudgetTicket(await self.governor.admit(info))
