"""Turn a chunk stream into one :class:`ChatCompletion` (non-streaming calls)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from lanewise.core.types import ChatChunk, ChatCompletion, Usage


async def collect(model: str, chunks: AsyncIterator[ChatChunk]) -> ChatCompletion:
    text: list[str] = []
    finish: Any = "stop"
    usage = Usage()
    async for chunk in chunks:
        text.append(chunk.delta)
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    return ChatCompletion(model=model, text="".join(text), finish_reason=finish, usage=usage)
