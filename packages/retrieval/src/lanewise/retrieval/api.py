"""HTTP routes of the retrieval lane, added to the gateway by ``lanewise_configure_gateway``.

``/v1/retrieve`` searches the caller's tenant: the tenant comes from the
authenticated principal, and the body has no field that could name another.

``/v1/embeddings`` is OpenAI-compatible (the official SDK asks for base64 by
default, so both encodings are served). Like every ``/v1`` route it is
authenticated by the gateway before the handler runs; embeddings are
tenant-agnostic, but usage is still metered per principal.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from lanewise.core.embeddings import embed_metered, embedding_tokens
from lanewise.core.errors import InvalidRequest, NotFound, Unavailable
from lanewise.core.factory import Components
from lanewise.core.gateway.principal import principal_of, request_id
from lanewise.core.protocols import Embedder
from lanewise.core.retrieve import retrieve_within
from lanewise.core.types import Hit, RetrievalRequest
from lanewise.retrieval.settings import RetrievalSettings
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

MAX_EMBEDDING_INPUTS = 2048


class EmbeddingsBody(msgspec.Struct, kw_only=True):
    # str, list[str], or token ids (rejected with a 400): msgspec allows one array type.
    input: str | list[Any]
    model: Annotated[str, msgspec.Meta(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    user: str | None = None


def embedder_names(embedder: Embedder, kind: str) -> set[str]:
    """What callers may send as ``model``: the id, its last segment, or the kind."""
    return {embedder.id, embedder.id.rsplit("/", 1)[-1], kind}


def texts_of(body: EmbeddingsBody) -> list[str]:
    raw = [body.input] if isinstance(body.input, str) else body.input
    if not raw:
        raise InvalidRequest("input must not be empty", field="input")
    if not all(isinstance(t, str) for t in raw):
        raise InvalidRequest("token-id arrays are not supported; send strings", field="input")
    if len(raw) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequest(
            f"at most {MAX_EMBEDDING_INPUTS} inputs per request (got {len(raw)})",
            field="input",
            limit=MAX_EMBEDDING_INPUTS,
        )
    texts = [str(t) for t in raw]
    for i, text in enumerate(texts):
        if not text.strip():
            raise InvalidRequest(f"input[{i}] is empty", field=f"input[{i}]")
    return texts


def encode(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


@post("/v1/embeddings", tags=["openai"], status_code=200)
async def embeddings(
    data: JSONBody[EmbeddingsBody],
    request: Request[Any, Any, Any],
    components: NamedDependency[Components],
) -> dict[str, Any]:
    """Create embeddings (OpenAI-compatible) with the configured embedder."""
    embedder = components.embedder()
    if embedder is None:
        raise Unavailable("no embedder is configured; set [retrieval.embedder]")
    spec = components.section(RetrievalSettings).embedder
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
    texts = texts_of(data)
    vectors = await embed_metered(
        embedder,
        texts,
        guards=components.guards,
        hook=components.hook,
        principal=principal_of(request),
        request_id=request_id(request),
    )
    tokens = embedding_tokens(embedder, texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v, data.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": embedder.id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


class RetrieveBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: str
    k: int | None = None
    filter: dict[str, Any] | None = None
    degrade: bool = False
    """On a store outage answer 200 with no hits and ``degraded: true`` instead of 503."""
    mode: str | None = None
    """``dense``, ``lexical`` or ``hybrid``; default ``retrieval.mode``."""
    fusion: str | None = None
    """``rrf`` or ``weighted`` (hybrid only); default ``retrieval.fusion``."""
    alpha: float | None = None
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


@post("/v1/retrieve", tags=["retrieval"], status_code=200)
async def retrieve(
    data: JSONBody[RetrieveBody],
    request: Request[Any, Any, Any],
    components: NamedDependency[Components],
) -> dict[str, Any]:
    """Search the caller's tenant: query text in, ranked hits with text, metadata, score, source."""
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
