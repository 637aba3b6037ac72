"""Hook implementations of lanewise-retrieval (entry point group `lanewise`)."""

from __future__ import annotations

from lanewise.core.hookspecs import hookimpl
from lanewise.core.registry import Register
from lanewise.retrieval.embedders.factories import build_minilm, build_openai


@hookimpl
def lanewise_register_embedders(register: Register) -> None:
    register(
        "minilm",
        build_minilm,
        description="all-MiniLM-L6-v2 (int8 ONNX) in process on onnxruntime, 384-d",
        default=True,
    )
    register("openai", build_openai, description="any OpenAI-compatible /v1/embeddings server")
