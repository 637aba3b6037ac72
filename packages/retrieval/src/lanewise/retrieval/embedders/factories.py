"""Factories behind ``[retrieval.embedder] kind = "minilm" | "openai" | "triton"``.

Each embedder is wrapped in :class:`~lanewise.retrieval.embedders.fair.FairEmbedder`,
so every caller (queries, ``/v1/embeddings``, ingestion) shares it fairly.
"""

from __future__ import annotations

from pathlib import Path

from lanewise.core.factory import FactoryContext
from lanewise.retrieval.embedders.fair import FairEmbedder
from lanewise.retrieval.embedders.minilm import MiniLMEmbedder
from lanewise.retrieval.embedders.openai import OpenAIEmbedder, api_key_from
from lanewise.retrieval.embedders.triton import TritonEmbedder


def build_minilm(ctx: FactoryContext) -> FairEmbedder:
    opts = ctx.read(
        {
            "batch_size",
            "intra_op_threads",
            "max_concurrency",
            "max_length",
            "model_path",
            "memory_arena",
        },
    )
    model_path = opts.text("model_path")
    # Two slots by default: bulk work takes one, the other stays free for queries.
    slots = opts.integer("max_concurrency", 2)
    batch_size = opts.integer("batch_size", 32)
    inner = MiniLMEmbedder(
        model_path=Path(model_path) if model_path else None,
        batch_size=batch_size,
        intra_op_threads=opts.integer("intra_op_threads", 1),
        max_concurrency=slots,
        max_length=opts.integer("max_length", 256),
        memory_arena=opts.flag("memory_arena", False),
    )
    return FairEmbedder(inner, slots=slots, batch_size=batch_size)


def build_openai(ctx: FactoryContext) -> FairEmbedder:
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
    batch_size = opts.integer("batch_size", 64)
    inner = OpenAIEmbedder(
        base_url=opts.required_text("base_url"),
        model=opts.required_text("model"),
        dimension=opts.integer("dimension", 0),
        api_key=api_key_from(ctx.options),
        id=opts.text("id"),
        version=opts.text("version", "1") or "1",
        batch_size=batch_size,
        timeout_s=opts.number(
            "timeout_s", min(30.0, ctx.settings.gateway.request_timeout_s), exclusive=True
        ),
        normalise=opts.flag("normalise", True),
    )
    return FairEmbedder(inner, slots=4, batch_size=batch_size)


def build_triton(ctx: FactoryContext) -> FairEmbedder:
    opts = ctx.read(
        {"url", "model", "batch_size", "max_concurrency", "timeout_s", "check_timeout_s"},
    )
    batch_size = opts.integer("batch_size", 32)
    slots = opts.integer("max_concurrency", 4)
    inner = TritonEmbedder(
        url=opts.required_text("url"),
        model=opts.text("model", "minilm") or "minilm",
        batch_size=batch_size,
        max_concurrency=slots,
        timeout_s=opts.number(
            "timeout_s", min(30.0, ctx.settings.gateway.request_timeout_s), exclusive=True
        ),
        check_timeout_s=opts.number("check_timeout_s", 2.0, exclusive=True),
    )
    return FairEmbedder(inner, slots=slots, batch_size=batch_size)
