"""Prompt templates: the RAG prompt comes from ``lanewise_resolve_prompt``.

Core's own resolver (``trylast``) answers with the built-in template, so a
plugin (the observe lane's registry, a test) only has to return its own
:class:`PromptTemplate` to take over. The resolved name and version travel
with the request to stage events, usage events and the response.
"""

from __future__ import annotations

import msgspec

RAG_PROMPT = "rag"
BUILTIN_RAG = "builtin/rag"
BUILTIN_RAG_TEXT = (
    "Answer the question using only the numbered sources below. "
    "Cite sources with their markers, e.g. [1]. If the sources do not contain "
    "the answer, say so.\n\n{sources}"
)


class PromptTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """A named, versioned template; ``{sources}`` is replaced by the retrieved passages."""

    name: str
    version: str
    text: str

    def render(self, *, sources: str) -> str:
        # str.replace, not str.format: a template may contain literal braces (JSON examples).
        return self.text.replace("{sources}", sources)


BUILTIN_RAG_TEMPLATE = PromptTemplate(name=BUILTIN_RAG, version="1", text=BUILTIN_RAG_TEXT)
