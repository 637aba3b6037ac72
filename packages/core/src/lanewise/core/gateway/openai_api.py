"""OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models`` over the core pipeline.

They live in core because the pipeline they front composes every lane: the
inference lane supplies backends, the retrieval lane a retriever, and neither
owns the HTTP surface. Bodies are msgspec Structs, so Litestar validates them
and names the offending field in a 400.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Literal

import msgspec
from lanewise.core.errors import PROBLEM_BASE, InvalidRequest, LanewiseError
from lanewise.core.gateway.body import JsonBody
from lanewise.core.gateway.openai_responses import (
    ChatCompletionOut,
    ModelListOut,
    TextCompletionOut,
)
from lanewise.core.gateway.openapi import drop_components, set_property
from lanewise.core.gateway.principal import principal_of, request_id
from lanewise.core.gateway.streaming import KEEPALIVE_COMMENT, with_keepalive
from lanewise.core.pipeline import Pipeline, citations_for
from lanewise.core.protocols import Describable
from lanewise.core.types import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    Message,
    RetrievalRequest,
    Role,
    SamplingParams,
    Usage,
)
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.response import Stream

log = logging.getLogger("lanewise.gateway")
NonNegFloat = Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]
# Bounds a 64-bit backend can hold, stated so the schema and the decoder agree.
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
Seed = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class TextPart(msgspec.Struct, kw_only=True, tag_field="type", tag="text"):
    text: str


class ImageUrlPart(msgspec.Struct, kw_only=True, tag_field="type", tag="image_url"):
    image_url: dict[str, Any]


class InputAudioPart(msgspec.Struct, kw_only=True, tag_field="type", tag="input_audio"):
    input_audio: dict[str, Any]


class FilePart(msgspec.Struct, kw_only=True, tag_field="type", tag="file"):
    file: dict[str, Any]


class RefusalPart(msgspec.Struct, kw_only=True, tag_field="type", tag="refusal"):
    refusal: str


# Parts the reference API defines: decoded so the refusal can name them (a 400 saying
# the model takes text only) instead of being dropped in silence.
ContentPart = TextPart | ImageUrlPart | InputAudioPart | FilePart | RefusalPart
Content = str | list[ContentPart]


def joined_text(content: Content | None, where: str) -> str:
    """Text parts joined; any other part is refused, naming where it is."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, TextPart):
            kind = type(part).__struct_config__.tag
            raise InvalidRequest(
                f"{where}.content[{i}] is a {kind!r} part; the models behind this gateway "
                "take text only: send 'text' parts",
                field=f"{where}.content[{i}].type",
            )
        texts.append(part.text)
    return "".join(texts)


class _MessageIn(msgspec.Struct, kw_only=True, tag_field="role"):
    name: str | None = None


class SystemMessageIn(_MessageIn, tag="system"):
    content: Content


class DeveloperMessageIn(_MessageIn, tag="developer"):
    content: Content


class UserMessageIn(_MessageIn, tag="user"):
    content: Content


class AssistantMessageIn(_MessageIn, tag="assistant"):
    content: Content | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ToolMessageIn(msgspec.Struct, kw_only=True, tag_field="role", tag="tool"):
    content: Content
    tool_call_id: str


ChatMessageIn = (
    SystemMessageIn | DeveloperMessageIn | UserMessageIn | AssistantMessageIn | ToolMessageIn
)
_ROLE: dict[type, Role] = {
    SystemMessageIn: "system",
    DeveloperMessageIn: "system",
    UserMessageIn: "user",
    AssistantMessageIn: "assistant",
    ToolMessageIn: "tool",
}


def to_message(message: ChatMessageIn, index: int) -> Message:
    return Message(
        role=_ROLE[type(message)],
        content=joined_text(message.content, f"messages[{index}]"),
        name=getattr(message, "name", None),
    )


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class RetrievalOptions(msgspec.Struct, kw_only=True):
    k: Annotated[int, msgspec.Meta(ge=1)] | None = None
    filter: dict[str, Any] | None = None
    degrade: bool | None = None
    """Answer without context (flagged) if the store is unavailable; default retrieval.degrade."""
    mode: Literal["dense", "lexical", "hybrid"] | None = None
    """Default retrieval.mode; the retriever checks it against what it supports."""
    fusion: Literal["rrf", "weighted", "gated"] | None = None
    alpha: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None


class LanewiseExtension(msgspec.Struct, kw_only=True):
    retrieval: RetrievalOptions | bool | None = None


class GenerationBody(msgspec.Struct, kw_only=True):
    """What chat and legacy completions share: the model and how to sample it."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    max_tokens: MaxTokens | None = None
    temperature: NonNegFloat | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=1)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: Seed | None = None
    user: str | None = None


class ChatCompletionsBody(GenerationBody, kw_only=True):
    messages: Annotated[list[ChatMessageIn], msgspec.Meta(min_length=1)]
    max_completion_tokens: MaxTokens | None = None
    lanewise: LanewiseExtension | None = None


class CompletionsBody(GenerationBody, kw_only=True):
    """Legacy ``/v1/completions``: one prompt in, text out."""

    prompt: str | Annotated[list[str], msgspec.Meta(min_length=1, max_length=1)]
    echo: bool = False


CHAT_BODY = JsonBody(ChatCompletionsBody)
COMPLETIONS_BODY = JsonBody(CompletionsBody)


def retrieval_request(extension: LanewiseExtension | None) -> RetrievalRequest | None:
    """``"retrieval": true`` means "on, with defaults"; false, null or absent mean off."""
    options = extension.retrieval if extension is not None else None
    if not options:
        return None
    if isinstance(options, RetrievalOptions):
        return RetrievalRequest(
            k=options.k,
            filter=options.filter,
            degrade=options.degrade,
            mode=options.mode,
            fusion=options.fusion,
            alpha=options.alpha,
        )
    return RetrievalRequest()


def to_chat_request(body: ChatCompletionsBody, request: Request[Any, Any, Any]) -> ChatRequest:
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    messages = [to_message(m, i) for i, m in enumerate(body.messages)]
    return ChatRequest(
        model=body.model,
        messages=messages,
        sampling=SamplingParams(
            max_tokens=body.max_completion_tokens or body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=stop,
        ),
        stream=body.stream,
        request_id=request_id(request),
        principal=principal_of(request),
        retrieval=retrieval_request(body.lanewise),
    )


def stream_extension(prepared: ChatRequest) -> dict[str, Any] | None:
    """What the final chunk of a stream says beyond OpenAI's fields (prompt, degraded retrieval)."""
    extension: dict[str, Any] = {}
    if prepared.prompt is not None:
        extension["prompt"] = msgspec.structs.asdict(prepared.prompt)
    if prepared.retrieval_degraded is not None:
        extension["retrieval"] = {"degraded": True, "reason": prepared.retrieval_degraded}
    return extension or None


def completion_json(completion: ChatCompletion, completion_id: str, created: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": completion.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": usage_json(completion.usage),
    }
    if completion.citations:
        body["lanewise"] = {"citations": [msgspec.structs.asdict(c) for c in completion.citations]}
    if completion.retrieval_degraded is not None:
        body.setdefault("lanewise", {})["retrieval"] = {
            "degraded": True,
            "reason": completion.retrieval_degraded,
        }
    if completion.prompt is not None:
        body.setdefault("lanewise", {})["prompt"] = msgspec.structs.asdict(completion.prompt)
    return body


def usage_json(usage: Any) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _sse(payload: Any) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


def _chat_choice(delta: str, finish_reason: str | None) -> dict[str, Any]:
    return {
        "index": 0,
        "delta": {"content": delta} if delta else {},
        "finish_reason": finish_reason,
    }


def _text_choice(delta: str, finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish_reason}


async def sse_events(
    chunks: AsyncIterator[ChatChunk],
    *,
    model: str,
    completion_id: str,
    created: int,
    include_usage: bool,
    citations: list[dict[str, Any]],
    keepalive_s: float | None = None,
    object_name: str = "chat.completion.chunk",
    lanewise: dict[str, Any] | None = None,
) -> AsyncIterator[bytes]:
    """OpenAI's chunk stream (chat or legacy text); an error mid-stream ends with an error event.

    Every stream ends with exactly one chunk carrying ``finish_reason`` (``stop``
    when the backend ended without saying why), then the usage chunk when
    ``include_usage`` asked for it, then ``[DONE]``. A comment line goes out
    every ``keepalive_s`` without a chunk so idle proxies keep the stream open.
    """
    chat = object_name == "chat.completion.chunk"
    choice = _chat_choice if chat else _text_choice
    base = {"id": completion_id, "object": object_name, "created": created, "model": model}
    if include_usage:
        base["usage"] = None
    if chat:
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        yield _sse({**base, "choices": [first]})
    usage = None
    finished = False
    extension: dict[str, Any] = dict(lanewise or {})
    stream: AsyncIterator[ChatChunk | None] = (
        with_keepalive(chunks, keepalive_s) if keepalive_s else chunks
    )
    try:
        async for chunk in stream:
            if chunk is None:
                yield KEEPALIVE_COMMENT
                continue
            if chunk.usage is not None:
                usage = chunk.usage
            if finished:
                continue
            if chunk.delta or chunk.finish_reason is not None:
                event: dict[str, Any] = {
                    **base,
                    "choices": [choice(chunk.delta, chunk.finish_reason)],
                }
                if chunk.finish_reason is not None:
                    finished = True
                    if citations:
                        extension["citations"] = citations
                if chunk.lanewise:
                    extension.update(chunk.lanewise)
                if extension and (finished or chunk.lanewise):
                    event["lanewise"] = extension
                    extension = {}
                yield _sse(event)
    except LanewiseError as exc:
        yield _sse({"error": {"type": exc.type_uri, "message": exc.detail, "code": exc.status}})
        return
    except Exception:
        # Headers are gone, so no problem+json: the client gets an error event and a
        # cleanly ended stream (re-raising would cut the connection mid-chunk), the
        # log gets the traceback, and the exception text never reaches the client.
        log.exception("stream %s failed after it started", completion_id)
        yield _sse(
            {
                "error": {
                    "type": PROBLEM_BASE + "internal",
                    "message": "generation failed",
                    "code": 500,
                }
            }
        )
        return
    if not finished:
        event = {**base, "choices": [choice("", "stop")]}
        if citations:
            extension["citations"] = citations
        if extension:
            event["lanewise"] = extension
        yield _sse(event)
    if include_usage:
        yield _sse({**base, "choices": [], "usage": usage_json(usage or Usage())})
    yield b"data: [DONE]\n\n"


def sse_stream(events: AsyncIterator[bytes], headers: Mapping[str, str] | None = None) -> Stream:
    """The HTTP response that carries ``sse_events`` (plus any extra ``headers``)."""
    return Stream(
        events,
        media_type="text/event-stream",
        # Litestar 2.x lets the handler's default media type (JSON) override the
        # Stream's own; an explicit header is kept (ASGIResponse uses setdefault).
        headers={
            "content-type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        },
    )


MODEL_ERRORS = (404, 429, 502, 503, 504)
NON_TEXT_PARTS = ("ImageUrlPart", "InputAudioPart", "FilePart", "RefusalPart")


def describe_models(*bodies: str) -> Any:
    """``opt["describe"]``: text parts only, and ``model`` one of the served models."""

    def describe(schemas: dict[str, Any], components: Any) -> None:
        drop_components(schemas, NON_TEXT_PARTS)
        if components is None:
            return
        pipeline = components.pipeline()
        names = sorted(pipeline.model_names())
        # Per model: max_tokens up to its backend's max_output_tokens (check_max_tokens).
        limits = [
            (name, limit)
            for name in names
            if isinstance(limit := getattr(pipeline.backends[name], "max_output_tokens", None), int)
        ]
        for body in bodies:
            if names:
                set_property(schemas, body, "model", enum=names)
            if body in schemas and limits:
                schemas[body].setdefault("allOf", []).extend(
                    {
                        "if": {"properties": {"model": {"const": name}}},
                        "then": {
                            "properties": {
                                field: {"anyOf": [{"maximum": limit}, {"type": "null"}]}
                                for field in ("max_tokens", "max_completion_tokens")
                            }
                        },
                    }
                    for name, limit in limits
                )

    return describe


@post(
    "/v1/chat/completions",
    tags=["openai"],
    status_code=200,
    opt={
        "body": CHAT_BODY,
        "ok": ChatCompletionOut,
        "stream": True,
        "errors": MODEL_ERRORS,
        "describe": describe_models("ChatCompletionsBody"),
    },
)
async def chat_completions(
    request: Request[Any, Any, Any],
    pipeline: NamedDependency[Pipeline],
) -> Any:
    """Create a chat completion (OpenAI-compatible; ``stream: true`` for SSE)."""
    # One dependency only: Litestar resolves two or more in an anyio task group,
    # two extra tasks per request (~90 us); settings come from the pipeline.
    data = await CHAT_BODY.read(request)
    chat = to_chat_request(data, request)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not data.stream:
        completion = await pipeline.complete(chat)
        return completion_json(completion, completion_id, created)
    if data.n != 1:
        raise InvalidRequest("n > 1 is not supported", field="n")
    prepared, chunks = await pipeline.stream(chat)
    degraded = {"X-Lanewise-Retrieval": "degraded"} if prepared.retrieval_degraded else {}
    return sse_stream(
        sse_events(
            chunks,
            model=data.model,
            completion_id=completion_id,
            created=created,
            include_usage=bool(data.stream_options and data.stream_options.include_usage),
            citations=[msgspec.structs.asdict(c) for c in citations_for(prepared.context)],
            keepalive_s=pipeline.settings.gateway.sse_keepalive_s,
            lanewise=stream_extension(prepared),
        ),
        degraded,
    )


@get(
    "/v1/models", tags=["openai"], sync_to_thread=False, opt={"ok": ModelListOut, "errors": (429,)}
)
def list_models(pipeline: NamedDependency[Pipeline]) -> dict[str, Any]:
    """Models this gateway serves."""
    data = []
    for name in pipeline.model_names():
        backend = pipeline.backends[name]
        entry: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "lanewise",
        }
        if isinstance(backend, Describable):
            entry.update(backend.describe())
        data.append(entry)
    return {"object": "list", "data": data}


def completions_to_chat_request(
    body: CompletionsBody, request: Request[Any, Any, Any]
) -> ChatRequest:
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return ChatRequest(
        model=body.model,
        messages=[Message(role="user", content=prompt)],
        sampling=SamplingParams(
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=stop,
        ),
        stream=body.stream,
        operation="completion",
        request_id=request_id(request),
        principal=principal_of(request),
    )


@post(
    "/v1/completions",
    tags=["openai"],
    status_code=200,
    opt={
        "body": COMPLETIONS_BODY,
        "ok": TextCompletionOut,
        "stream": True,
        "errors": MODEL_ERRORS,
        "describe": describe_models("CompletionsBody"),
    },
)
async def completions(
    request: Request[Any, Any, Any],
    pipeline: NamedDependency[Pipeline],
) -> Any:
    """Create a legacy text completion (OpenAI-compatible; ``stream: true`` for SSE)."""
    data = await COMPLETIONS_BODY.read(request)
    chat = completions_to_chat_request(data, request)
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    prefix = chat.messages[0].content if data.echo else ""
    if not data.stream:
        completion = await pipeline.complete(chat)
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": completion.model,
            "choices": [
                {
                    "index": 0,
                    "text": prefix + completion.text,
                    "logprobs": None,
                    "finish_reason": completion.finish_reason,
                }
            ],
            "usage": usage_json(completion.usage),
        }
    _, chunks = await pipeline.stream(chat)
    if prefix:
        chunks = _prepend(ChatChunk(delta=prefix), chunks)
    return sse_stream(
        sse_events(
            chunks,
            model=data.model,
            completion_id=completion_id,
            created=created,
            include_usage=bool(data.stream_options and data.stream_options.include_usage),
            citations=[],
            keepalive_s=pipeline.settings.gateway.sse_keepalive_s,
            object_name="text_completion",
        ),
    )


async def _prepend(first: ChatChunk, rest: AsyncIterator[ChatChunk]) -> AsyncIterator[ChatChunk]:
    yield first
    async for chunk in rest:
        yield chunk
