"""The backends this lane registers (called from ``plugin.py``)."""

from __future__ import annotations

from lanewise.core.registry import Register


def register_backends(register: Register) -> None:
    from lanewise.inference.extractive import build_extractive

    register(
        "extractive",
        build_extractive,
        description="embedded default: the context sentences most relevant to the question, "
        "with citation markers (extractive, not generative)",
        default=True,
    )
