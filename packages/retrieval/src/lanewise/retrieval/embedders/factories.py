"""Factories behind ``[retrieval.embedder] kind = "minilm" | "openai" | "triton"``."""

from __future__ import annotations

from pathlib import Path

from lanewise.core.factory import FactoryContext
from lanewise.retrieval.embedders.minilm import MiniLMEmbedder
from lanewise.retrieval.embedders.openai import OpenAIEmbedder, api_key_from
from lanewise.retrieval.embedders.triton import TritonEmbedder


def build_minilm(ctx: FactoryContext) -> MiniLMEmbedder:
    opts = ctx.read(
        {"batch_size", "intra_op_threads", "max_concurrency", "max_length", "model_path"},
    )
    model_path = opts.text("model_path")
    return MiniLMEmbedder(
        model_path=Path(model_path) if model_path else None,
        batch_size=opts.integer("batch_size", 32),
        intra_op_threads=opts.integer("intra_op_threads", 1),
        max_concurrency=opts.integer("max_concurrency", 1),
        max_length=opts.integer("max_length", 256),
    )


def build_openai(ctx: FactoryContext) -> OpenAIEmbedder:
    opts = ctx.read(
        {
            "base_url",
            "model",
            "dimension",
            "api_key",
            "api_key_env",
            "id",
            "version",
            "batch_size",
            "timeout_s",
            "normalise",
        },
    )
    return OpenAIEmbedder(
        base_url=opts.required_text("base_url"),
        model=opts.required_text("model"),
        dimension=opts.integer("dimension", 0),
        api_key=api_key_from(ctx.options),
        id=opts.text("id"),
        version=opts.text("version", "1") or "1",
        batch_size=opts.integer("batch_size", 64),
        timeout_s=opts.number(
            "timeout_s", min(30.0, ctx.settings.gateway.request_timeout_s), exclusive=True
        ),
        normalise=opts.flag("normalise", True),
    )


def build_triton(ctx: FactoryContext) -> TritonEmbedder:
    opts = ctx.read(
        {"url", "model", "batch_size", "max_concurrency", "timeout_s", "check_timeout_s"},
    )
    return TritonEmbedder(
        url=opts.required_text("url"),
        model=opts.text("model", "minilm") or "minilm",
        batch_size=opts.integer("batch_size", 32),
        max_concurrency=opts.integer("max_concurrency", 4),
        timeout_s=opts.number(
            "timeout_s", min(30.0, ctx.settings.gateway.request_timeout_s), exclusive=True
        ),
        check_timeout_s=opts.number("check_timeout_s", 2.0, exclusive=True),
    )
