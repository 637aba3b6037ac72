"""Model-call guards: admit before a model call, observe its stream, settle after.

Every model call a request makes — chat ``generate``/``stream``, embeddings,
retrieval's query embedding, evaluations — runs inside a :class:`CallScope`
opened by :meth:`GuardChain.admit`. Guards come from ``lanewise_register_guards``
and compose like an onion, by ``order`` (then name):

* ``admit`` runs in order, before any upstream is contacted. A guard refuses
  by raising a :class:`~lanewise.core.errors.LanewiseError` (problem+json for
  the caller); the guards already admitted are then settled with
  ``status = "refused"``, in reverse order.
* ``on_chunk`` runs in order for every streamed chunk; the first guard that
  returns a :class:`StreamStop` ends the stream after that chunk (the
  upstream iterator is closed, which cancels generation).
* ``settle`` runs exactly once per admitted guard, in reverse order, on
  success, error, deadline, cancellation or client disconnect. It runs
  shielded from cancellation, so a disconnect cannot skip it, and a guard
  whose settle raises is logged without stopping the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec
from lanewise.core.context import RequestContext, current_request
from lanewise.core.errors import LanewiseError, UpstreamTimeout
from lanewise.core.types import (
    ANONYMOUS,
    ChatChunk,
    ChatRequest,
    FinishReason,
    Operation,
    Principal,
    Usage,
)

log = logging.getLogger("lanewise.guards")

Status = Literal["ok", "error", "timeout", "cancelled", "refused"]


class ModelCall(msgspec.Struct, frozen=True, kw_only=True):
    """What a guard sees before a model call."""

    operation: Operation
    model: str
    principal: Principal = ANONYMOUS
    request_id: str = ""
    purpose: str = "request"
    """Why the call is made: ``request`` (the caller asked for it), ``retrieval.query``,
    ``ingest``, ``evaluation``; every call a request triggers shares its ``request_id``."""
    request: ChatRequest | None = None
    """Chat and completion calls: the final request (RAG prompt included)."""
    inputs: tuple[str, ...] = ()
    """Embedding calls: the texts."""
    max_tokens: int | None = None


class CallOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How a call ended, for ``settle``."""

    status: Status
    usage: Usage = msgspec.field(default_factory=Usage)
    error: str | None = None
    duration_s: float = 0.0
    stopped_by: str | None = None
    """The guard whose ``StreamStop`` ended the stream, if one did."""


class StreamStop(msgspec.Struct, frozen=True, kw_only=True):
    """Returned by ``on_chunk`` to end a stream after the current chunk."""

    finish_reason: FinishReason = "length"
    lanewise: dict[str, Any] | None = None
    """Merged into the final chunk's ``lanewise`` object (e.g. the budget that stopped it)."""


@runtime_checkable
class GuardTicket(Protocol):
    """One admitted call, as one guard tracks it."""

    def on_chunk(self, chunk: ChatChunk) -> StreamStop | None: ...

    async def settle(self, outcome: CallOutcome) -> None: ...


@runtime_checkable
class ModelCallGuard(Protocol):
    name: str

    async def admit(self, call: ModelCall) -> GuardTicket | None:
        """Raise a LanewiseError to refuse; return None when there is nothing to settle."""
        ...


def outcome_status(exc: BaseException | None) -> Status:
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    if isinstance(exc, TimeoutError | UpstreamTimeout):
        return "timeout"
    return "error"


def _error_text(exc: BaseException | None) -> str | None:
    if exc is None or isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return None
    return exc.detail if isinstance(exc, LanewiseError) else type(exc).__name__


class CallScope:
    """An admitted call: feed it chunks, set ``usage``, and it settles exactly once."""

    __slots__ = ("_settled", "_t0", "_tickets", "call", "stopped_by", "usage")

    def __init__(self, call: ModelCall, tickets: Sequence[tuple[str, GuardTicket]]) -> None:
        self.call = call
        self.usage = Usage()
        self.stopped_by: str | None = None
        self._tickets = tuple(tickets)
        self._settled = False
        self._t0 = time.perf_counter()

    @property
    def settled(self) -> bool:
        return self._settled

    def on_chunk(self, chunk: ChatChunk) -> StreamStop | None:
        if chunk.usage is not None:
            self.usage = chunk.usage
        stop: StreamStop | None = None
        for name, ticket in self._tickets:
            result = ticket.on_chunk(chunk)
            if result is not None and stop is None:
                stop, self.stopped_by = result, name
        return stop

    async def settle(
        self, exc: BaseException | None = None, *, status: Status | None = None
    ) -> None:
        """Settle every ticket once (later calls do nothing), shielded from cancellation."""
        if self._settled:
            return
        self._settled = True
        if not self._tickets:
            return
        outcome = CallOutcome(
            status=status or outcome_status(exc),
            usage=self.usage,
            error=_error_text(exc),
            duration_s=time.perf_counter() - self._t0,
            stopped_by=self.stopped_by,
        )
        await _shielded(_settle_all(self._tickets, outcome))


async def _settle_all(tickets: Sequence[tuple[str, GuardTicket]], outcome: CallOutcome) -> None:
    for name, ticket in reversed(tickets):
        try:
            await ticket.settle(outcome)
        except Exception:
            log.exception("guard %s failed to settle a call; the others still settle", name)


async def _shielded(coro: Any) -> None:
    """Run ``coro`` to completion even if the caller is being cancelled (a disconnect)."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # The caller is cancelled; the settlement goes on in its own task.
        if not task.done():
            task.add_done_callback(_log_failure)
        raise


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("settling a call failed: %r", task.exception())


async def settle_abandoned(context: RequestContext) -> None:
    """Settle, as cancelled, the calls of a finished request that nothing settled."""
    for scope in context.open_calls:
        if isinstance(scope, CallScope) and not scope.settled:
            await scope.settle(status="cancelled")
    context.open_calls.clear()


class GuardChain:
    """The installed guards in order; falsy when there are none (the hot path skips it)."""

    def __init__(self, guards: Sequence[tuple[str, ModelCallGuard]] = ()) -> None:
        self.guards = tuple(guards)

    def __bool__(self) -> bool:
        return bool(self.guards)

    def names(self) -> list[str]:
        return [name for name, _ in self.guards]

    async def admit(self, call: ModelCall) -> CallScope:
        """Admit ``call`` through every guard, or settle the admitted ones and re-raise."""
        tickets: list[tuple[str, GuardTicket]] = []
        for name, guard in self.guards:
            try:
                ticket = await guard.admit(call)
            except BaseException as exc:
                scope = CallScope(call, tickets)
                status: Status = "refused" if isinstance(exc, LanewiseError) else "cancelled"
                await scope.settle(exc, status=status if status == "refused" else None)
                raise
            if ticket is not None:
                tickets.append((name, ticket))
        scope = CallScope(call, tickets)
        context = current_request()
        if context is not None and tickets:
            context.open_calls.append(scope)
        return scope

    @asynccontextmanager
    async def call(self, call: ModelCall) -> AsyncIterator[CallScope]:
        """``async with chain.call(c) as scope: ...; scope.usage = ...`` — admit, run, settle."""
        scope = await self.admit(call)
        try:
            yield scope
        except BaseException as exc:
            await scope.settle(exc)
            raise
        await scope.settle()
