"""Model-call guards: admission order, refusal, stream stops, and settle exactly once.

The property test cancels the consumer at random points (before admission
finishes, before the first chunk, mid-stream, never starting the stream) and
checks that every admitted ticket settles exactly once and nothing else does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lanewise.core.context import RequestContext, request_scope
from lanewise.core.errors import LimitExceeded
from lanewise.core.guards import CallOutcome, GuardChain, ModelCall, StreamStop, settle_abandoned
from lanewise.core.pipeline import Pipeline
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.settings import load_settings
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest, Message, Usage


class Ticket:
    def __init__(self, guard: Guard, call_no: int) -> None:
        self.guard, self.call_no = guard, call_no

    def on_chunk(self, chunk: ChatChunk) -> StreamStop | None:
        self.guard.chunks += 1
        if self.guard.stop_after is not None and self.guard.chunks >= self.guard.stop_after:
            return StreamStop(lanewise={"by": self.guard.name})
        return None

    async def settle(self, outcome: CallOutcome) -> None:
        await asyncio.sleep(self.guard.settle_delay)
        self.guard.settled[self.call_no] += 1
        self.guard.outcomes.append(outcome)


class Guard:
    def __init__(
        self,
        name: str,
        *,
        refuse: bool = False,
        admit_delay: float = 0.0,
        settle_delay: float = 0.0,
        stop_after: int | None = None,
    ) -> None:
        self.name, self.refuse, self.stop_after = name, refuse, stop_after
        self.admit_delay, self.settle_delay = admit_delay, settle_delay
        self.admitted: Counter[int] = Counter()
        self.settled: Counter[int] = Counter()
        self.outcomes: list[CallOutcome] = []
        self.chunks = 0

    async def admit(self, call: ModelCall) -> Ticket:
        await asyncio.sleep(self.admit_delay)
        if self.refuse:
            raise LimitExceeded(f"{self.name} says no", guard=self.name)
        call_no = int(call.request_id)
        self.admitted[call_no] += 1
        return Ticket(self, call_no)


class Backend:
    name = "b"

    def __init__(self, chunks: int, delay: float) -> None:
        self.chunks, self.delay, self.closed = chunks, delay, 0

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        await asyncio.sleep(self.delay * self.chunks)
        return ChatCompletion(
            model=request.model, text="x", finish_reason="stop", usage=Usage(completion_tokens=1)
        )

    async def stream(self, request: ChatRequest) -> Any:
        try:
            for i in range(self.chunks):
                await asyncio.sleep(self.delay)
                yield ChatChunk(delta=f"t{i} ")
            yield ChatChunk(finish_reason="stop", usage=Usage(completion_tokens=self.chunks))
        finally:
            self.closed += 1


def pipeline(guards: list[Guard], backend: Backend) -> Pipeline:
    return Pipeline(
        backends={"m": backend},
        retriever=None,
        plugin_manager=get_plugin_manager([]),
        settings=load_settings(None, sections={}),
        guards=GuardChain([(g.name, g) for g in guards]),
    )


def request(call_no: int) -> ChatRequest:
    return ChatRequest(
        model="m", messages=[Message(role="user", content="q")], request_id=str(call_no)
    )


async def test_admission_runs_in_order_and_settlement_in_reverse() -> None:
    order: list[str] = []

    class Recording(Guard):
        async def admit(self, call: ModelCall) -> Ticket:
            order.append(f"admit {self.name}")
            return await super().admit(call)

    a, b = Recording("a"), Recording("b")
    original = Ticket.settle

    async def settle(self: Ticket, outcome: CallOutcome) -> None:
        order.append(f"settle {self.guard.name}")
        await original(self, outcome)

    Ticket.settle = settle  # type: ignore[method-assign]
    try:
        await pipeline([a, b], Backend(2, 0)).complete(request(1))
    finally:
        Ticket.settle = original  # type: ignore[method-assign]
    assert order == ["admit a", "admit b", "settle b", "settle a"]


async def test_a_refusal_settles_the_guards_admitted_before_it_as_refused() -> None:
    first, refuser, never = Guard("first"), Guard("refuser", refuse=True), Guard("never")
    backend = Backend(2, 0)
    with pytest.raises(LimitExceeded, match="refuser says no"):
        await pipeline([first, refuser, never], backend).complete(request(1))
    assert first.settled == Counter({1: 1})
    assert [o.status for o in first.outcomes] == ["refused"]
    assert never.admitted == Counter()
    assert backend.closed == 0  # the backend was never called


async def test_a_stream_stop_ends_after_that_chunk_and_closes_the_backend() -> None:
    capper, backend = Guard("cap", stop_after=2), Backend(10, 0)
    _, chunks = await pipeline([capper], backend).stream(request(1))
    got = [c async for c in chunks]
    assert [c.delta for c in got] == ["t0 ", "t1 "]
    assert got[-1].finish_reason == "length"
    assert got[-1].lanewise == {"by": "cap"}
    assert backend.closed == 1
    assert [(o.status, o.stopped_by) for o in capper.outcomes] == [("ok", "cap")]


@settings(max_examples=60, deadline=None)
@given(
    n_guards=st.integers(1, 3),
    refuse_at=st.one_of(st.none(), st.integers(0, 2)),
    stream=st.booleans(),
    chunks=st.integers(0, 6),
    cancel_after_s=st.one_of(st.none(), st.floats(0, 0.012)),
    start_stream=st.booleans(),
    admit_delay=st.sampled_from([0.0, 0.001, 0.003]),
    settle_delay=st.sampled_from([0.0, 0.002]),
    stop_after=st.one_of(st.none(), st.integers(1, 4)),
)
def test_settle_runs_exactly_once_under_random_cancellation(
    n_guards: int,
    refuse_at: int | None,
    stream: bool,
    chunks: int,
    cancel_after_s: float | None,
    start_stream: bool,
    admit_delay: float,
    settle_delay: float,
    stop_after: int | None,
) -> None:
    guards = [
        Guard(
            f"g{i}",
            refuse=refuse_at == i,
            admit_delay=admit_delay,
            settle_delay=settle_delay,
            stop_after=stop_after if i == 0 else None,
        )
        for i in range(n_guards)
    ]
    backend = Backend(chunks, 0.001)

    async def one_request(context: RequestContext) -> None:
        with request_scope(context):
            pipe = pipeline(guards, backend)
            if not stream:
                await pipe.complete(request(7))
                return
            _, gen = await pipe.stream(request(7))
            if start_stream:
                async for _ in gen:
                    pass

    async def main() -> None:
        # Like the gateway: the request runs in a task that a disconnect may cancel,
        # and whatever it left unsettled is settled when the request ends.
        context = RequestContext(request_id="7")
        task = asyncio.ensure_future(one_request(context))
        if cancel_after_s is not None:
            await asyncio.sleep(cancel_after_s)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, LimitExceeded):
            await task
        await settle_abandoned(context)
        await asyncio.sleep(settle_delay * n_guards + 0.01)  # shielded settles finish

    asyncio.run(main())
    for guard in guards:
        assert set(guard.settled) <= set(guard.admitted)
        for call_no, times in guard.admitted.items():
            assert guard.settled[call_no] == times == 1, (guard.name, guard.outcomes)
