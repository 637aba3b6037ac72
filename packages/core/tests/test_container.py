"""The container releases what it built when a later component fails at start-up."""

from __future__ import annotations

import pytest
from lanewise.core.container import build_components
from lanewise.core.errors import ConfigError
from lanewise.core.hookspecs import hookimpl
from lanewise.core.types import ChatChunk, ChatCompletion, Usage


class HoldsAResource:
    name = "holds"

    def __init__(self) -> None:
        self.closed = False

    async def generate(self, request):
        return ChatCompletion(model=request.model, text="", finish_reason="stop", usage=Usage())

    async def stream(self, request):
        yield ChatChunk(finish_reason="stop")

    async def aclose(self) -> None:
        self.closed = True


class Plugin:
    def __init__(self) -> None:
        self.built: list[HoldsAResource] = []

    @hookimpl
    def lanewise_register_backends(self, register):
        def holds(ctx):
            self.built.append(HoldsAResource())
            return self.built[-1]

        def broken(ctx):
            raise ConfigError("models.b: cannot reach the upstream")

        register("holds", holds)
        register("broken", broken)


def test_failed_start_closes_components_built_before_the_failure(
    register_plugin, lanewise_settings
):
    plugin = Plugin()
    pm = register_plugin(plugin, allowlist=["core"])
    settings = lanewise_settings(models={"a": {"kind": "holds"}, "b": {"kind": "broken"}})
    with pytest.raises(ConfigError, match="cannot reach the upstream"):
        build_components(settings, pm)
    assert len(plugin.built) == 1
    assert plugin.built[0].closed


async def test_failed_start_inside_a_running_loop_still_closes(register_plugin, lanewise_settings):
    plugin = Plugin()
    pm = register_plugin(plugin, allowlist=["core"])
    settings = lanewise_settings(models={"a": {"kind": "holds"}, "b": {"kind": "broken"}})
    with pytest.raises(ConfigError):
        build_components(settings, pm)
    assert plugin.built[0].closed
