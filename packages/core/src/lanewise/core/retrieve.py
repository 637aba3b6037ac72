"""Retrieval under a deadline, with the degrade policy: one helper for every caller.

The pipeline's retrieve stage and the retrieval lane's ``/v1/retrieve`` both
need "search, but give up at the deadline, and on an outage either fail or
answer without context (flagged)"; this is that, once.
"""

from __future__ import annotations

import asyncio

import msgspec
from lanewise.core.errors import Unavailable, UpstreamTimeout
from lanewise.core.protocols import Retriever
from lanewise.core.types import Hit, Principal, RetrievalRequest


class RetrievalResult(msgspec.Struct, frozen=True, kw_only=True):
    hits: list[Hit]
    k: int
    degraded: str | None = None
    """Why no search ran (store unavailable or too slow, degrade on); None when it ran."""


async def retrieve_within(
    retriever: Retriever,
    *,
    principal: Principal,
    query: str,
    options: RetrievalRequest,
    deadline_s: float,
    request_id: str = "",
) -> RetrievalResult:
    k = options.k if options.k is not None else retriever.default_k
    degrade = retriever.degrade if options.degrade is None else options.degrade
    try:
        try:
            async with asyncio.timeout(deadline_s):
                hits = await retriever.retrieve(
                    principal=principal,
                    query=query,
                    k=k,
                    filter=options.filter,
                    request_id=request_id,
                    # Only what the caller set: a retriever without search modes takes none.
                    **options.search_options(),
                )
        except TimeoutError:
            raise UpstreamTimeout(
                f"retrieval did not finish within {deadline_s:g}s", deadline_s=deadline_s
            ) from None
    except (Unavailable, UpstreamTimeout) as exc:
        if not degrade:
            raise
        return RetrievalResult(hits=[], k=k, degraded=exc.detail)
    return RetrievalResult(hits=hits, k=k)
