"""Hook implementations of lanewise-inference (entry point group `lanewise`)."""

from __future__ import annotations

from lanewise.core.hookspecs import hookimpl
from lanewise.core.registry import Register
from lanewise.inference import backends


@hookimpl
def lanewise_register_backends(register: Register) -> None:
    backends.register_backends(register)
