"""Factories this lane registers: loaders, the token chunker, the no-op embedder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
from lanewise.ingest.wiring import factory_inputs
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


def _parse(model: type[_Options], options: dict[str, Any], key: str) -> Any:
    from lanewise.core.errors import ConfigError
    from pydantic import ValidationError

    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise ConfigError(
            "; ".join(f"{key}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None


def build_token_chunker(*args: Any) -> TokenChunker:
    options, parts = factory_inputs(args)
    opts = _parse(TokenChunkerOptions, options, "ingest.chunker")
    embedder = parts.embedder() if opts.tokenizer == "embedder" else None
    try:
        return TokenChunker(
            size=opts.size, overlap=opts.overlap, tokenizer=tokenizer_for(opts.tokenizer, embedder)
        )
    except ValueError as exc:
        from lanewise.core.errors import ConfigError

        raise ConfigError(f"ingest.chunker (tokens): {exc}") from None


def build_text_loader(ctx: Any) -> TextLoader:
    _parse(_Options, dict(ctx.options), ctx.key)
    return TextLoader(ingest_settings(ctx.settings).read_block_bytes)


def build_markdown_loader(ctx: Any) -> MarkdownLoader:
    _parse(_Options, dict(ctx.options), ctx.key)
    return MarkdownLoader()


def build_html_loader(ctx: Any) -> HtmlLoader:
    _parse(_Options, dict(ctx.options), ctx.key)
    return HtmlLoader()


def build_pdf_loader(ctx: Any) -> PdfLoader:
    _parse(_Options, dict(ctx.options), ctx.key)
    return PdfLoader()


def build_jsonl_loader(ctx: Any) -> JsonLinesLoader:
    opts = _parse(JsonLinesOptions, dict(ctx.options), ctx.key)
    return JsonLinesLoader(opts.text_field, opts.metadata_fields)


class NoopEmbedder:
    """No model: one fixed unit vector per text.

    For measuring the ingest pipeline's own cost (benchmarks, the memory test on a
    200 MB file) without a model's; every chunk is equally similar to every query.
    """

    id = "lanewise/noop"
    version = "1"

    def __init__(self, dimension: int = 8) -> None:
        self.dimension = dimension
        self._vector = [1.0] + [0.0] * (dimension - 1)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._vector] * len(texts)


class NoopOptions(_Options):
    dimension: int = Field(8, ge=1)


def build_noop_embedder(*args: Any) -> NoopEmbedder:
    options, _ = factory_inputs(args)
    return NoopEmbedder(_parse(NoopOptions, options, "retrieval.embedder").dimension)
