"""Hook implementations of the Triton part of the inference lane.

``plugin.py`` re-exports these two functions; ``specname`` lets them sit in the
same plugin module as the lane's other ``lanewise_register_backends``
implementation without a name clash.
"""

from __future__ import annotations

import click
from lanewise.core.hookspecs import hookimpl
from lanewise.core.registry import Register


@hookimpl(specname="lanewise_register_backends")
def triton_register_backends(register: Register) -> None:
    from lanewise.inference.triton.factory import build_triton

    register(
        "triton",
        build_triton,
        description="NVIDIA Triton with the TensorRT-LLM contract (ensemble or LLM-API layout), "
        "gRPC streaming with per-request cancellation",
    )


@hookimpl(specname="lanewise_configure_cli")
def triton_configure_cli(cli: click.Group) -> None:
    from lanewise.core.commands import serve
    from lanewise.inference.triton.cli import serve_triton, triton

    cli.add_command(triton)
    # ``serve`` is core's group (a module-level object, whichever plugin runs first).
    serve.add_command(serve_triton)
