"""Factories this lane registers: loaders, the token chunker, the no-op embedder."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from lanewise.core.factory import FactoryContext
from lanewise.ingest.chunker import TokenChunker
from lanewise.ingest.loaders import (
    HtmlLoader,
    JsonLinesLoader,
    MarkdownLoader,
    PdfLoader,
    TextLoader,
)
from lanewise.ingest.settings import ingest_settings
from lanewise.ingest.tokens import tokenizer_for
from pydantic import BaseModel, ConfigDict, Field


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenChunkerOptions(_Options):
    size: int = Field(200, ge=1, description="tokens per chunk at most")
    overlap: int = Field(20, ge=0, description="tokens shared by consecutive chunks")
    tokenizer: str = Field(
        "embedder", description="'embedder' (its tokenizer.json, else words), 'words', or a path"
    )


class JsonLinesOptions(_Options):
    text_field: str = "text"
    metadata_fields: list[str] | None = None


def build_token_chunker(ctx: FactoryContext) -> TokenChunker:
    opts = ctx.parse(TokenChunkerOptions)
    embedder = ctx.components.embedder() if opts.tokenizer == "embedder" else None
    try:
        return TokenChunker(
            size=opts.size, overlap=opts.overlap, tokenizer=tokenizer_for(opts.tokenizer, embedder)
        )
    except ValueError as exc:
        raise ctx.error(str(exc)) from None


def build_text_loader(ctx: FactoryContext) -> TextLoader:
    ctx.parse(_Options)
    return TextLoader(ingest_settings(ctx.settings).read_block_bytes)


def build_markdown_loader(ctx: FactoryContext) -> MarkdownLoader:
    ctx.parse(_Options)
    return MarkdownLoader()


def build_html_loader(ctx: FactoryContext) -> HtmlLoader:
    ctx.parse(_Options)
    return HtmlLoader()


def build_pdf_loader(ctx: FactoryContext) -> PdfLoader:
    ctx.parse(_Options)
    return PdfLoader()


def build_jsonl_loader(ctx: FactoryContext) -> JsonLinesLoader:
    opts = ctx.parse(JsonLinesOptions)
    return JsonLinesLoader(opts.text_field, opts.metadata_fields)


class NoopEmbedder:
    """No model: a unit vector per text, drawn from a hash of the text.

    For measuring the ingest pipeline's own cost (benchmarks, the memory test on a
    200 MB file) without a model's. The vectors are distinct and spread like real ones
    (the same text, the same vector): with one vector for every text, pgvector's HNSW
    index kept piling up duplicates, and its inserts got slower and erratic as it grew
    (200 ten-row batches: 3.8 to 7.1 s on one table, against a steady 2.35 s for distinct
    vectors), which is not what a real embedder's writes cost.
    """

    id = "lanewise/noop"
    version = "2"

    def __init__(self, dimension: int = 8) -> None:
        self.dimension = dimension

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(text) for text in texts]

    def vector(self, text: str) -> list[float]:
        raw = hashlib.shake_128(text.encode()).digest(self.dimension)
        values = [b - 127.5 for b in raw]  # never all zero: every value is ±0.5 or more
        norm = math.sqrt(sum(v * v for v in values))
        return [v / norm for v in values]


class NoopOptions(_Options):
    dimension: int = Field(8, ge=1)


def build_noop_embedder(ctx: FactoryContext) -> NoopEmbedder:
    return NoopEmbedder(ctx.parse(NoopOptions).dimension)
