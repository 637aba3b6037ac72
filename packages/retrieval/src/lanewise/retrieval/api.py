"""HTTP routes of the retrieval lane, added to the gateway by ``lanewise_configure_gateway``.

``/v1/retrieve`` searches the caller's tenant: the tenant comes from the
authenticated principal, and the body has no field that could name another.

``/v1/embeddings`` is OpenAI-compatible (the official SDK asks for base64 by
default, so both encodings are served). Like every ``/v1`` route it is
authenticated by the gateway before the handler runs; embeddings are
tenant-agnostic, but usage is still metered per principal.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from lanewise.core.embeddings import embed_metered, embedding_tokens
from lanewise.core.errors import InvalidRequest, NotFound, Unavailable, UpstreamTimeout
from lanewise.core.factory import Components
from lanewise.core.gateway.body import NON_BLANK, JsonBody
from lanewise.core.gateway.openapi import set_property
from lanewise.core.gateway.principal import principal_of, request_id
from lanewise.core.protocols import Embedder
from lanewise.core.retrieve import retrieve_within
from lanewise.core.types import Hit, RetrievalRequest
from lanewise.retrieval.embedders.fair import INTERACTIVE_MAX_TEXTS
from lanewise.retrieval.filter_schema import COMPONENTS
from lanewise.retrieval.settings import RetrievalSettings
from litestar import Request, Response, post
from litestar.di import NamedDependency

# Blank texts are refused in code (texts_of, the retriever) and described in /schema by
# NON_BLANK: as a msgspec ``pattern`` this class crashes msgspec 0.22 at exit.
NonBlank = Annotated[str, msgspec.Meta(min_length=1)]


class EmbeddingsBody(msgspec.Struct, kw_only=True):
    input: NonBlank | Annotated[list[NonBlank], msgspec.Meta(min_length=1)]
    model: Annotated[str, msgspec.Meta(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    user: str | None = None


EMBEDDINGS_BODY = JsonBody(EmbeddingsBody)


class EmbeddingOut(msgspec.Struct, kw_only=True):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str
    """Floats, or little-endian float32 bytes in base64 (``encoding_format``)."""


class EmbeddingUsageOut(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsOut(msgspec.Struct, kw_only=True):
    object: Literal["list"]
    data: list[EmbeddingOut]
    model: str
    usage: EmbeddingUsageOut


def embedder_names(embedder: Embedder, kind: str) -> set[str]:
    """What callers may send as ``model``: the id, its last segment, or the kind."""
    return {embedder.id, embedder.id.rsplit("/", 1)[-1], kind}


def texts_of(body: EmbeddingsBody, max_inputs: int) -> list[str]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if len(texts) > max_inputs:
        raise InvalidRequest(
            f"at most {max_inputs} inputs per request (got {len(texts)}); "
            "split the inputs over several requests",
            field="input",
            limit="retrieval.max_embedding_inputs",
            max=max_inputs,
        )
    for i, text in enumerate(texts):
        if not text.strip():
            raise InvalidRequest(f"input[{i}] is empty", field=f"input[{i}]")
    return texts


def token_counts(embedder: Embedder, texts: list[str]) -> list[int]:
    """Tokens per input: before truncation where the embedder can say (minilm), else as
    ``embedding_tokens`` counts them (the embedder's own count, or words)."""
    untruncated = getattr(embedder, "token_counts", None)
    if callable(untruncated):
        return list(untruncated(texts))
    return [embedding_tokens(embedder, [text]) for text in texts]


def check_token_limits(counts: list[int], retrieval: RetrievalSettings) -> None:
    per_input = retrieval.max_embedding_input_tokens
    for i, count in enumerate(counts):
        if count > per_input:
            raise InvalidRequest(
                f"input[{i}] has {count} tokens, above the limit of {per_input} per input; "
                "shorten or split it",
                field=f"input[{i}]",
                limit="retrieval.max_embedding_input_tokens",
                max=per_input,
            )
    total, per_request = sum(counts), retrieval.max_embedding_request_tokens
    if total > per_request:
        raise InvalidRequest(
            f"the inputs have {total} tokens together, above the limit of {per_request} "
            "per request; send them over several requests",
            field="input",
            limit="retrieval.max_embedding_request_tokens",
            max=per_request,
        )


def encode(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


def render_embeddings(
    vectors: list[list[float]], encoding_format: str, model: str, tokens: int
) -> bytes:
    return msgspec.json.encode(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode(v, encoding_format)}
                for i, v in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def describe_embeddings(schemas: dict[str, Any], components: Components | None) -> None:
    """The served embedding model names and dimension, the configured input limit."""
    embedder = components.embedder() if components is not None else None
    if components is None or embedder is None:
        return
    section = components.section(RetrievalSettings)
    spec = section.embedder
    names = embedder_names(embedder, spec.kind if spec is not None else "minilm")
    set_property(schemas, "EmbeddingsBody", "model", enum=sorted(names))
    set_property(schemas, "EmbeddingsBody", "dimensions", enum=[embedder.dimension])
    body = schemas.get("EmbeddingsBody", {}).get("properties", {}).get("input", {})
    for branch in body.get("anyOf", []):
        if branch.get("type") == "array":
            branch["maxItems"] = section.max_embedding_inputs
            branch["items"]["pattern"] = NON_BLANK
        else:
            branch["pattern"] = NON_BLANK


def describe_retrieval(schemas: dict[str, Any], components: Components | None) -> None:
    """The filter language and ``retrieval.max_k``, here and in chat's retrieval options."""
    schemas.update(COMPONENTS)
    set_property(schemas, "RetrieveBody", "query", pattern=NON_BLANK)
    max_k = components.section(RetrievalSettings).max_k if components is not None else None
    for component in ("RetrieveBody", "RetrievalOptions"):
        if component not in schemas:
            continue
        schemas[component]["properties"]["filter"] = {
            "anyOf": [{"$ref": "#/components/schemas/Filter"}, {"type": "null"}],
            "default": None,
        }
        if max_k is not None:
            set_property(schemas, component, "k", maximum=max_k)


@post(
    "/v1/embeddings",
    tags=["openai"],
    status_code=200,
    opt={
        "body": EMBEDDINGS_BODY,
        "ok": EmbeddingsOut,
        "errors": (404, 429, 502, 503, 504),
        "describe": describe_embeddings,
    },
)
async def embeddings(
    request: Request[Any, Any, Any],
    components: NamedDependency[Components],
) -> Response[bytes]:
    """Create embeddings (OpenAI-compatible) with the configured embedder."""
    data = await EMBEDDINGS_BODY.read(request)
    embedder = components.embedder()
    if embedder is None:
        raise Unavailable("no embedder is configured; set [retrieval.embedder]")
    section = components.section(RetrievalSettings)
    spec = section.embedder
    names = embedder_names(embedder, spec.kind if spec is not None else "minilm")
    if data.model not in names:
        raise NotFound(
            f"embedding model {data.model!r} does not exist; "
            f"use one of: {', '.join(sorted(names))}",
            model=data.model,
            available_models=sorted(names),
        )
    if data.dimensions is not None and data.dimensions != embedder.dimension:
        raise InvalidRequest(
            f"dimensions must be {embedder.dimension} for {embedder.id}", field="dimensions"
        )
    texts = texts_of(data, section.max_embedding_inputs)
    deadline = components.settings.gateway.request_timeout_s
    try:
        async with asyncio.timeout(deadline):
            # Tokenising a large request is real CPU: off the event loop, like the model.
            counts = await asyncio.to_thread(token_counts, embedder, texts)
            check_token_limits(counts, section)
            max_length = getattr(embedder, "max_length", None)
            tokens = sum(min(c, max_length) for c in counts) if max_length else sum(counts)
            vectors = await embed_metered(
                embedder,
                texts,
                guards=components.guards,
                hook=components.hook,
                principal=principal_of(request),
                request_id=request_id(request),
                tokens=tokens,
            )
    except TimeoutError:
        raise UpstreamTimeout(
            f"embedding did not finish within gateway.request_timeout_s = {deadline:g}s; "
            "send fewer or shorter inputs per request",
            deadline_s=deadline,
        ) from None
    args = (vectors, data.encoding_format, embedder.id, tokens)
    # Encoding thousands of vectors takes tens of ms: off the loop unless it is small.
    if len(vectors) <= INTERACTIVE_MAX_TEXTS:
        content = render_embeddings(*args)
    else:
        content = await asyncio.to_thread(render_embeddings, *args)
    return Response(content=content, media_type="application/json")


class RetrieveBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: NonBlank
    k: Annotated[int, msgspec.Meta(ge=1)] | None = None
    filter: dict[str, Any] | None = None
    degrade: bool = False
    """On a store outage answer 200 with no hits and ``degraded: true`` instead of 503."""
    mode: Literal["dense", "lexical", "hybrid"] | None = None
    """``dense``, ``lexical`` or ``hybrid``; default ``retrieval.mode``."""
    fusion: Literal["rrf", "weighted", "gated"] | None = None
    """``rrf``, ``weighted`` or ``gated`` (hybrid only); default ``retrieval.fusion``."""
    alpha: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    """Weight of the dense side in hybrid fusion, in [0, 1]; default ``retrieval.alpha``."""


def hit_json(hit: Hit) -> dict[str, Any]:
    return {
        "id": hit.id,
        "text": hit.text,
        "metadata": hit.metadata,
        "score": hit.score,
        "source": hit.source,
        "dense_rank": hit.dense_rank,
        "lexical_rank": hit.lexical_rank,
    }


RETRIEVE_BODY = JsonBody(RetrieveBody)


class RetrieveOut(msgspec.Struct, kw_only=True):
    object: Literal["list"]
    k: int
    tenant: str
    data: list[dict[str, Any]]
    """Hits, best first: id, text, metadata, score, source."""
    degraded: bool
    reason: str | None = None


@post(
    "/v1/retrieve",
    tags=["retrieval"],
    status_code=200,
    opt={
        "body": RETRIEVE_BODY,
        "ok": RetrieveOut,
        "errors": (429, 503, 504),
        "describe": describe_retrieval,
    },
)
async def retrieve(
    request: Request[Any, Any, Any],
    components: NamedDependency[Components],
) -> dict[str, Any]:
    """Search the caller's tenant: query text in, ranked hits with text, metadata, score, source."""
    data = await RETRIEVE_BODY.read(request)
    retriever = components.retriever()
    if retriever is None:
        raise Unavailable("retrieval is not configured: no embedder or no vector store")
    principal = principal_of(request)
    result = await retrieve_within(
        retriever,
        principal=principal,
        query=data.query,
        options=RetrievalRequest(
            k=data.k,
            filter=data.filter,
            degrade=data.degrade,
            mode=data.mode,
            fusion=data.fusion,
            alpha=data.alpha,
        ),
        deadline_s=components.settings.gateway.request_timeout_s,
        request_id=request_id(request),
    )
    body: dict[str, Any] = {"object": "list", "k": result.k, "tenant": principal.tenant}
    if result.degraded is not None:
        return {**body, "data": [], "degraded": True, "reason": result.degraded}
    return {**body, "data": [hit_json(h) for h in result.hits], "degraded": False}


ROUTES = [embeddings, retrieve]
