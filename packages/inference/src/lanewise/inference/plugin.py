"""Hook implementations of lanewise-inference (entry point group `lanewise`)."""

from __future__ import annotations

from lanewise.core.factory import Components
from lanewise.core.hookspecs import hookimpl
from lanewise.core.registry import Register
from lanewise.core.types import StateSample
from lanewise.inference import backends
from lanewise.inference.triton.hooks import triton_configure_cli as triton_configure_cli
from lanewise.inference.triton.hooks import triton_register_backends as triton_register_backends


@hookimpl
def lanewise_register_backends(register: Register) -> None:
    backends.register_backends(register)


@hookimpl
def lanewise_collect_state(components: Components) -> list[StateSample]:
    from lanewise.inference.pools.state import pool_state

    return pool_state(components)
