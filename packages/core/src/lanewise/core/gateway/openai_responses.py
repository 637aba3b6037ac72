"""The shapes of the OpenAI-compatible 200 responses, for the OpenAPI document.

The handlers build these bodies as plain dicts on the hot path; the Structs
here only describe them (``opt["ok"]`` of each route), and the gateway tests
decode real responses with them so description and behaviour cannot drift.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class UsageOut(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessageOut(msgspec.Struct, kw_only=True):
    role: Literal["assistant"]
    content: str | None


class ChatChoiceOut(msgspec.Struct, kw_only=True):
    index: int
    message: AssistantMessageOut
    finish_reason: str | None


class ChatCompletionOut(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoiceOut]
    usage: UsageOut
    lanewise: dict[str, Any] | None = None
    """Citations and retrieval status, when retrieval ran."""


class TextChoiceOut(msgspec.Struct, kw_only=True):
    index: int
    text: str
    logprobs: None
    finish_reason: str | None


class TextCompletionOut(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoiceOut]
    usage: UsageOut


class ModelOut(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelListOut(msgspec.Struct, kw_only=True):
    object: Literal["list"]
    data: list[ModelOut]
