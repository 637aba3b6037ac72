"""The request pipeline: retrieve → prompt → generate, every model call guarded.

Each stage emits one ``lanewise_on_stage`` event with its timing; each model
call passes through the model-call guards (admit → chunks → settle) and emits
one ``lanewise_on_usage`` event. A stage whose lane is not installed (no
retriever) is skipped and emits nothing. Every upstream call runs under the
gateway's deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

import msgspec
import pluggy
from lanewise.core.context import current_request
from lanewise.core.errors import InvalidRequest, NotFound, UpstreamTimeout
from lanewise.core.events import notify
from lanewise.core.guards import CallScope, GuardChain, ModelCall, outcome_status
from lanewise.core.prompts import BUILTIN_RAG_TEMPLATE, RAG_PROMPT, PromptTemplate
from lanewise.core.protocols import ChatBackend, OutputLimited, Retriever
from lanewise.core.retrieve import retrieve_within
from lanewise.core.settings import Settings
from lanewise.core.stages import timed_stage
from lanewise.core.types import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    Citation,
    FinishReason,
    Hit,
    Message,
    PromptRef,
    RetrievalRequest,
    Usage,
    UsageEvent,
)

RAG_ALIAS_PREFIX = "rag/"
"""``rag/<model>`` is ``<model>`` with retrieval on (default k) for clients that cannot send
the ``lanewise`` extension field."""


def render_sources(hits: list[Hit]) -> str:
    return "\n\n".join(
        f"[{i}] ({hit.source or hit.id})\n{hit.text}" for i, hit in enumerate(hits, 1)
    )


def citations_for(hits: list[Hit]) -> list[Citation]:
    return [
        Citation(
            marker=f"[{i}]",
            id=h.id,
            source=h.source,
            dense_rank=h.dense_rank,
            lexical_rank=h.lexical_rank,
        )
        for i, h in enumerate(hits, 1)
    ]


def _model_timeout(request: ChatRequest, deadline: float) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"model {request.model!r} did not finish within {deadline:g}s; "
        "retry, or raise gateway.request_timeout_s",
        deadline_s=deadline,
    )


class Pipeline:
    def __init__(
        self,
        *,
        backends: Mapping[str, ChatBackend],
        retriever: Retriever | None,
        plugin_manager: pluggy.PluginManager,
        settings: Settings,
        guards: GuardChain | None = None,
    ) -> None:
        self.backends = dict(backends)
        self.retriever = retriever
        self._hook = plugin_manager.hook
        self.settings = settings
        self.guards = guards if guards is not None else GuardChain()
        # Capabilities are fixed per backend: check them once, not per request.
        self._output_limits = {
            name: b.max_output_tokens if isinstance(b, OutputLimited) else None
            for name, b in self.backends.items()
        }

    # -- lookup -------------------------------------------------------------
    def model_names(self) -> list[str]:
        return sorted(self.backends)

    def backend_for(self, model: str) -> ChatBackend:
        backend = self.backends.get(model.removeprefix(RAG_ALIAS_PREFIX))
        if backend is None:
            raise NotFound(
                f"model {model!r} does not exist; use one of: {', '.join(self.model_names())}",
                model=model,
                available_models=self.model_names(),
            )
        return backend

    def check_max_tokens(self, request: ChatRequest) -> None:
        """Reject ``max_tokens`` above the model's limit before anything runs."""
        self.backend_for(request.model)
        limit = self._output_limits.get(request.model)
        asked = request.sampling.max_tokens
        if limit is not None and asked is not None and asked > limit:
            raise InvalidRequest(
                f"max_tokens = {asked} is above the limit of model {request.model!r}; "
                f"ask for at most {limit}",
                field="max_tokens",
                limit=limit,
            )

    # -- stages ---------------------------------------------------------------
    def stage(
        self, request: ChatRequest, name: str, **attributes: Any
    ) -> AbstractContextManager[dict[str, Any]]:
        return timed_stage(self._hook, request.request_id, name, attributes)

    def resolve_alias(self, request: ChatRequest) -> ChatRequest:
        """``rag/<model>`` → ``<model>`` with retrieval on (unless the body configured it)."""
        if not request.model.startswith(RAG_ALIAS_PREFIX):
            return request
        return msgspec.structs.replace(
            request,
            model=request.model.removeprefix(RAG_ALIAS_PREFIX),
            retrieval=request.retrieval or RetrievalRequest(),
        )

    async def retrieve(self, request: ChatRequest) -> ChatRequest:
        if self.retriever is None or request.retrieval is None:
            return request
        query = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        options = request.retrieval
        k = options.k if options.k is not None else self.retriever.default_k
        with self.stage(request, "retrieve", k=k) as attrs:
            try:
                result = await retrieve_within(
                    self.retriever,
                    principal=request.principal,
                    query=query,
                    options=options,
                    deadline_s=request.deadline_s or self.settings.gateway.request_timeout_s,
                    request_id=request.request_id,
                )
            except InvalidRequest as exc:
                if exc.extensions.get("field") != "query" or query.strip():
                    raise
                # No user text to search with (k and the filter were valid): no context,
                # exactly as for a search with no hits.
                attrs["hits"] = 0
                return request
            if result.degraded is not None:
                attrs["degraded"] = True
                return msgspec.structs.replace(request, retrieval_degraded=result.degraded)
            attrs["hits"] = len(result.hits)
        return msgspec.structs.replace(request, context=result.hits)

    def resolve_prompt(self, request: ChatRequest) -> PromptTemplate:
        template: PromptTemplate | None = self._hook.lanewise_resolve_prompt(
            name=RAG_PROMPT, request=request
        )
        return template or BUILTIN_RAG_TEMPLATE

    def prompt(self, request: ChatRequest) -> ChatRequest:
        if not request.context:
            return request
        template = self.resolve_prompt(request)
        attributes = {
            "lanewise.prompt.template": template.name,
            "lanewise.prompt.version": template.version,
        }
        with self.stage(request, "prompt", **attributes):
            system = Message(
                role="system", content=template.render(sources=render_sources(request.context))
            )
            context = current_request()
            if context is not None:
                context.prompt_name, context.prompt_version = template.name, template.version
            return msgspec.structs.replace(
                request,
                messages=[system, *request.messages],
                prompt=PromptRef(name=template.name, version=template.version),
            )

    async def prepare(self, request: ChatRequest) -> ChatRequest:
        request = self.resolve_alias(request)
        self.check_max_tokens(request)
        context = current_request()
        if context is not None:
            context.model = request.model
        return self.prompt(await self.retrieve(request))

    # -- generation -----------------------------------------------------------
    def model_call(self, request: ChatRequest) -> ModelCall:
        return ModelCall(
            operation=request.operation,
            model=request.model,
            principal=request.principal,
            request_id=request.request_id,
            request=request,
            max_tokens=request.sampling.max_tokens,
        )

    async def complete(self, request: ChatRequest) -> ChatCompletion:
        """Run the whole pipeline and return one completion.

        Uses the backend's ``generate`` (one upstream call, no per-token events to
        parse), so a proxied non-streaming request stays non-streaming upstream.
        """
        prepared = await self.prepare(request)
        scope = await self.guards.admit(self.model_call(prepared)) if self.guards else None
        completion = await self._generate_whole(prepared, scope)
        return ChatCompletion(
            model=request.model,
            text=completion.text,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            citations=citations_for(prepared.context),
            retrieval_degraded=prepared.retrieval_degraded,
            prompt=prepared.prompt,
        )

    async def _generate_whole(
        self, request: ChatRequest, scope: CallScope | None
    ) -> ChatCompletion:
        backend = self.backend_for(request.model)
        t0 = time.perf_counter()
        usage = Usage()
        done: float | None = None
        finish: FinishReason | None = None
        failure: BaseException | None = None
        deadline = request.deadline_s or self.settings.gateway.request_timeout_s
        with self.stage(request, "generate", **{"gen_ai.request.model": request.model}) as attrs:
            try:
                async with asyncio.timeout(deadline):
                    completion = await backend.generate(request)
                usage = completion.usage
                finish = completion.finish_reason
                done = time.perf_counter() - t0
                return completion
            except TimeoutError as exc:
                failure = exc
                raise _model_timeout(request, deadline) from None
            except BaseException as exc:
                failure = exc
                raise
            finally:
                attrs["gen_ai.usage.input_tokens"] = usage.prompt_tokens
                attrs["gen_ai.usage.output_tokens"] = usage.completion_tokens
                if scope is not None:
                    scope.usage = usage
                    await scope.settle(failure)
                # Non-streaming: the first token reaches the caller with the last.
                self._emit_usage(request, backend, usage, done, t0, failure, finish)

    def _emit_usage(
        self,
        request: ChatRequest,
        backend: ChatBackend,
        usage: Usage,
        ttft: float | None,
        t0: float,
        failure: BaseException | None,
        finish: FinishReason | None,
    ) -> None:
        context = current_request()
        notify(
            self._hook.lanewise_on_usage,
            UsageEvent(
                request_id=request.request_id,
                principal=request.principal,
                model=request.model,
                operation=request.operation,
                usage=usage,
                ttft_s=ttft,
                duration_s=time.perf_counter() - t0,
                backend=backend.name,
                status=outcome_status(failure),
                prompt_name=request.prompt.name if request.prompt else None,
                prompt_version=request.prompt.version if request.prompt else None,
                index_version=context.index_version if context is not None else None,
                finish_reason=finish,
            ),
        )

    async def stream(self, request: ChatRequest) -> tuple[ChatRequest, AsyncIterator[ChatChunk]]:
        """Prepare (retrieve, prompt) and admit now, so refusals come before the stream starts."""
        prepared = await self.prepare(request)
        scope = await self.guards.admit(self.model_call(prepared)) if self.guards else None
        return prepared, self._generate(prepared, scope)

    async def _generate(
        self, request: ChatRequest, scope: CallScope | None
    ) -> AsyncIterator[ChatChunk]:
        backend = self.backend_for(request.model)
        t0 = time.perf_counter()
        ttft: float | None = None
        usage = Usage()
        finish: FinishReason | None = None
        failure: BaseException | None = None
        deadline = request.deadline_s or self.settings.gateway.request_timeout_s
        with self.stage(request, "generate", **{"gen_ai.request.model": request.model}) as attrs:
            # The deadline applies only while we wait on the backend, never while the
            # consumer holds a chunk, so it cannot cancel the caller's unrelated work.
            chunks = backend.stream(request)
            end = asyncio.get_running_loop().time() + deadline
            try:
                while True:
                    try:
                        async with asyncio.timeout_at(end):
                            chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    if chunk.usage is not None:
                        usage = chunk.usage
                    stop = scope.on_chunk(chunk) if scope is not None else None
                    if stop is not None:
                        finish = stop.finish_reason
                        # Closing the backend's iterator below cancels the upstream generation.
                        yield msgspec.structs.replace(
                            chunk,
                            finish_reason=stop.finish_reason,
                            lanewise={**(chunk.lanewise or {}), **(stop.lanewise or {})},
                        )
                        break
                    if chunk.finish_reason is not None:
                        finish = chunk.finish_reason
                    yield chunk
            except TimeoutError as exc:
                failure = exc
                raise _model_timeout(request, deadline) from None
            except BaseException as exc:
                failure = exc
                raise
            finally:
                if isinstance(chunks, AsyncGenerator):
                    await chunks.aclose()
                attrs["gen_ai.usage.input_tokens"] = usage.prompt_tokens
                attrs["gen_ai.usage.output_tokens"] = usage.completion_tokens
                if scope is not None:
                    await scope.settle(failure)
                self._emit_usage(request, backend, usage, ttft, t0, failure, finish)
