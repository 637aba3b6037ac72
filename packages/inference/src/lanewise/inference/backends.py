"""The backends this lane registers (called from ``plugin.py``)."""

from __future__ import annotations

from lanewise.core.registry import Register


def register_backends(register: Register) -> None:
    from lanewise.inference.extractive import build_extractive
    from lanewise.inference.hf_local import build_hf_local
    from lanewise.inference.openai_compat import build_openai
    from lanewise.inference.pools.router import build_pool

    register(
        "extractive",
        build_extractive,
        description="embedded default: the context sentences most relevant to the question, "
        "with citation markers (extractive, not generative)",
        default=True,
    )
    register(
        "openai",
        build_openai,
        description="any OpenAI-compatible server (vLLM, trtllm-serve, NIM, SGLang)",
    )
    register(
        "hf-local",
        build_hf_local,
        description="a transformers causal LM from a local directory, in process "
        "(generative; needs the extra lanewise-inference[hf])",
    )
    register(
        "pool",
        build_pool,
        description="named pools (interactive warm, batch spot) of replicas of other backends",
    )
