"""One metered, guarded embedding call: what every lane that embeds goes through.

``/v1/embeddings``, retrieval's query embedding and ingestion batches all need
the same three things around ``embedder.embed``: the model-call guards (admit,
settle), one ``lanewise_on_usage`` event with the call's outcome, and a token
count. This is that, once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from lanewise.core.events import notify
from lanewise.core.guards import GuardChain, ModelCall, outcome_status
from lanewise.core.protocols import Embedder, TokenCountingEmbedder
from lanewise.core.types import ANONYMOUS, Principal, Usage, UsageEvent


def embedding_tokens(embedder: Embedder, texts: Sequence[str]) -> int:
    """Tokens the embedder sees: exact when it counts its own, else whitespace words."""
    if isinstance(embedder, TokenCountingEmbedder):
        return embedder.count_tokens(texts)
    return sum(len(t.split()) for t in texts)


async def embed_metered(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    guards: GuardChain | None,
    hook: Any,
    principal: Principal = ANONYMOUS,
    request_id: str = "",
    purpose: str = "request",
    tokens: int | None = None,
) -> list[list[float]]:
    """Embed ``texts`` through the guards; emit one usage event however it ends.

    ``tokens``: the count when the caller has it already (``/v1/embeddings`` counts
    large requests off the event loop); else it is counted here.
    """
    if tokens is None:
        tokens = embedding_tokens(embedder, texts)
    t0 = time.perf_counter()
    failure: BaseException | None = None
    try:
        if guards:
            call = ModelCall(
                operation="embedding",
                purpose=purpose,
                model=embedder.id,
                principal=principal,
                request_id=request_id,
                inputs=tuple(texts),
            )
            async with guards.call(call) as scope:
                vectors = await embedder.embed(texts)
                scope.usage = Usage(prompt_tokens=tokens)
        else:
            vectors = await embedder.embed(texts)
        return vectors
    except BaseException as exc:
        failure = exc
        raise
    finally:
        if hook is not None:
            notify(
                hook.lanewise_on_usage,
                UsageEvent(
                    request_id=request_id,
                    principal=principal,
                    model=embedder.id,
                    operation="embedding",
                    usage=Usage(prompt_tokens=tokens if failure is None else 0),
                    duration_s=time.perf_counter() - t0,
                    backend=f"{embedder.id}@{embedder.version}",
                    purpose=purpose,
                    status=outcome_status(failure),
                ),
            )
