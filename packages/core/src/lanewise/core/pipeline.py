"""The request pipeline: retrieve → prompt → generate.

Each stage emits one ``lanewise_on_stage`` event with its timing; each model
call emits one ``lanewise_on_usage`` event. A stage whose lane is not
installed (no retriever) is skipped and emits nothing. Every upstream call
runs under the gateway's deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

import msgspec
import pluggy
from lanewise.core.errors import InvalidRequest, NotFound, Unavailable, UpstreamTimeout
from lanewise.core.protocols import ChatBackend, Retriever
from lanewise.core.settings import Settings
from lanewise.core.stages import timed_stage
from lanewise.core.types import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    Citation,
    Hit,
    Message,
    Usage,
    UsageEvent,
)

RAG_ALIAS_PREFIX = "rag/"
"""``rag/<model>`` is ``<model>`` with retrieval on (default k) for clients that cannot send
the ``lanewise`` extension field."""
DEGRADED = "retrieval_degraded"
PROMPT_TEMPLATE_NAME = "builtin/rag"
PROMPT_TEMPLATE_VERSION = "1"
RAG_SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources below. "
    "Cite sources with their markers, e.g. [1]. If the sources do not contain "
    "the answer, say so.\n\n{sources}"
)


def render_sources(hits: list[Hit]) -> str:
    return "\n\n".join(
        f"[{i}] ({hit.source or hit.id})\n{hit.text}" for i, hit in enumerate(hits, 1)
    )


def citations_for(hits: list[Hit]) -> list[Citation]:
    return [Citation(marker=f"[{i}]", id=h.id, source=h.source) for i, h in enumerate(hits, 1)]


def check_max_tokens(request: ChatRequest, backend: ChatBackend) -> None:
    """Reject ``max_tokens`` above the model's limit (a backend's ``max_output_tokens``)."""
    limit = getattr(backend, "max_output_tokens", None)
    asked = request.sampling.max_tokens
    if isinstance(limit, int) and asked is not None and asked > limit:
        raise InvalidRequest(
            f"max_tokens = {asked} is above the limit of model {request.model!r}; "
            f"ask for at most {limit}",
            field="max_tokens",
            limit=limit,
        )


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
    ) -> None:
        self.backends = dict(backends)
        self.retriever = retriever
        self._hook = plugin_manager.hook
        self.settings = settings

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

    # -- stages ---------------------------------------------------------------
    def stage(
        self, request: ChatRequest, name: str, **attributes: Any
    ) -> AbstractContextManager[dict[str, Any]]:
        return timed_stage(self._hook, request.request_id, name, attributes)

    def resolve_alias(self, request: ChatRequest) -> ChatRequest:
        """``rag/<model>`` → ``<model>`` with retrieval on (unless the body configured it)."""
        if not request.model.startswith(RAG_ALIAS_PREFIX):
            return request
        extra = dict(request.extra)
        if not extra.get("retrieval"):
            extra["retrieval"] = {}
        return msgspec.structs.replace(
            request, model=request.model.removeprefix(RAG_ALIAS_PREFIX), extra=extra
        )

    async def retrieve(self, request: ChatRequest) -> ChatRequest:
        options = request.extra.get("retrieval")
        # ``{}`` (``"retrieval": true``) means "on, with defaults"; only None/False is off.
        if self.retriever is None or options is None or options is False:
            return request
        if not isinstance(options, Mapping):
            options = {}
        query = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        k = int(options.get("k") or self.settings.retrieval.default_k)
        degrade = options.get("degrade")
        degrade = self.settings.retrieval.degrade if degrade is None else bool(degrade)
        with self.stage(request, "retrieve", k=k) as attrs:
            try:
                hits = await self._deadline(
                    self.retriever.retrieve(
                        principal=request.principal,
                        query=query,
                        k=k,
                        filter=options.get("filter"),
                        request_id=request.request_id,
                    )
                )
            except InvalidRequest as exc:
                if exc.extensions.get("field") != "query" or query.strip():
                    raise
                # No user text to search with (the options were valid): no context,
                # exactly as for a search with no hits.
                attrs["hits"] = 0
                return request
            except (Unavailable, UpstreamTimeout) as exc:
                if not degrade:
                    raise
                attrs["degraded"] = True
                return msgspec.structs.replace(
                    request, extra={**request.extra, DEGRADED: exc.detail}
                )
            attrs["hits"] = len(hits)
        return msgspec.structs.replace(request, context=hits)

    def prompt(self, request: ChatRequest) -> ChatRequest:
        if not request.context:
            return request
        with self.stage(
            request,
            "prompt",
            **{
                "lanewise.prompt.template": PROMPT_TEMPLATE_NAME,
                "lanewise.prompt.version": PROMPT_TEMPLATE_VERSION,
            },
        ):
            system = Message(
                role="system",
                content=RAG_SYSTEM_PROMPT.format(sources=render_sources(request.context)),
            )
            return msgspec.structs.replace(request, messages=[system, *request.messages])

    async def prepare(self, request: ChatRequest) -> ChatRequest:
        request = self.resolve_alias(request)
        check_max_tokens(request, self.backend_for(request.model))
        return self.prompt(await self.retrieve(request))

    # -- generation -----------------------------------------------------------
    async def complete(self, request: ChatRequest) -> ChatCompletion:
        """Run the whole pipeline and return one completion.

        Uses the backend's ``generate`` (one upstream call, no per-token events to
        parse), so a proxied non-streaming request stays non-streaming upstream.
        """
        prepared = await self.prepare(request)
        completion = await self._generate_whole(prepared)
        return ChatCompletion(
            model=request.model,
            text=completion.text,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            citations=citations_for(prepared.context),
            retrieval_degraded=prepared.extra.get(DEGRADED),
        )

    async def _generate_whole(self, request: ChatRequest) -> ChatCompletion:
        backend = self.backend_for(request.model)
        t0 = time.perf_counter()
        usage = Usage()
        done: float | None = None
        deadline = request.deadline_s or self.settings.gateway.request_timeout_s
        with self.stage(request, "generate", **{"gen_ai.request.model": request.model}) as attrs:
            try:
                async with asyncio.timeout(deadline):
                    completion = await backend.generate(request)
                usage = completion.usage
                done = time.perf_counter() - t0
                return completion
            except TimeoutError:
                raise _model_timeout(request, deadline) from None
            finally:
                attrs["gen_ai.usage.input_tokens"] = usage.prompt_tokens
                attrs["gen_ai.usage.output_tokens"] = usage.completion_tokens
                # Non-streaming: the first token reaches the caller with the last.
                self._emit_usage(request, backend, usage, done, t0)

    def _emit_usage(
        self,
        request: ChatRequest,
        backend: ChatBackend,
        usage: Usage,
        ttft: float | None,
        t0: float,
    ) -> None:
        self._hook.lanewise_on_usage(
            event=UsageEvent(
                request_id=request.request_id,
                principal=request.principal,
                model=request.model,
                operation=request.extra.get("operation", "chat"),
                usage=usage,
                ttft_s=ttft,
                duration_s=time.perf_counter() - t0,
                backend=backend.name,
            )
        )

    async def stream(self, request: ChatRequest) -> tuple[ChatRequest, AsyncIterator[ChatChunk]]:
        """Prepare (retrieve, prompt) now, so errors surface before the stream starts."""
        prepared = await self.prepare(request)
        return prepared, self._generate(prepared)

    async def _generate(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        backend = self.backend_for(request.model)
        t0 = time.perf_counter()
        ttft: float | None = None
        usage = Usage()
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
                    yield chunk
            except TimeoutError:
                raise _model_timeout(request, deadline) from None
            finally:
                closer = getattr(chunks, "aclose", None)
                if closer is not None:
                    await closer()
                attrs["gen_ai.usage.input_tokens"] = usage.prompt_tokens
                attrs["gen_ai.usage.output_tokens"] = usage.completion_tokens
                self._emit_usage(request, backend, usage, ttft, t0)

    async def _deadline(self, awaitable: Any) -> Any:
        deadline = self.settings.gateway.request_timeout_s
        try:
            async with asyncio.timeout(deadline):
                return await awaitable
        except TimeoutError:
            raise UpstreamTimeout(
                f"retrieval did not finish within {deadline:g}s", deadline_s=deadline
            ) from None
