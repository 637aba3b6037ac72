"""``notify``: the usage and stage events reach the same implementations, in the same
order, as a pluggy call would, and follow registrations made after the first event."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pluggy
import pytest
from lanewise.core import hookspecs
from lanewise.core.events import notify
from lanewise.core.hookspecs import hookimpl
from lanewise.core.types import StageTiming

EVENT = StageTiming(request_id="r1", stage="search", started_at=0.0, duration_s=0.1)


def manager(*plugins: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    return pm


class Recorder:
    def __init__(self, name: str, calls: list[tuple[str, Any]]) -> None:
        self.name = name
        self.calls = calls

    @hookimpl
    def lanewise_on_stage(self, event: StageTiming) -> None:
        self.calls.append((self.name, event))


class First(Recorder):
    @hookimpl(tryfirst=True)
    def lanewise_on_stage(self, event: StageTiming) -> None:
        self.calls.append((self.name, event))


def both_ways(pm: pluggy.PluginManager, calls: list[tuple[str, Any]]) -> tuple[list[str], ...]:
    """The order of calls through ``notify`` and through pluggy."""
    notify(pm.hook.lanewise_on_stage, EVENT)
    direct = [name for name, _ in calls]
    calls.clear()
    pm.hook.lanewise_on_stage(event=EVENT)
    through_pluggy = [name for name, _ in calls]
    calls.clear()
    return direct, through_pluggy


def test_same_implementations_in_pluggys_order() -> None:
    calls: list[tuple[str, Any]] = []
    pm = manager(Recorder("a", calls), First("first", calls), Recorder("b", calls))
    direct, through_pluggy = both_ways(pm, calls)
    assert direct == through_pluggy == ["first", "b", "a"]


def test_registrations_after_the_first_event_are_seen() -> None:
    calls: list[tuple[str, Any]] = []
    a = Recorder("a", calls)
    pm = manager(a)
    notify(pm.hook.lanewise_on_stage, EVENT)
    assert calls == [("a", EVENT)]
    calls.clear()
    pm.register(Recorder("b", calls))
    assert both_ways(pm, calls) == (["b", "a"], ["b", "a"])
    pm.unregister(a)
    assert both_ways(pm, calls) == (["b"], ["b"])
    pm.unregister(name=pm.get_name(pm.get_plugins().pop()))
    notify(pm.hook.lanewise_on_stage, EVENT)
    assert calls == []


def test_an_implementation_error_propagates() -> None:
    class Broken:
        @hookimpl
        def lanewise_on_stage(self, event: StageTiming) -> None:
            raise ValueError("sink down")

    with pytest.raises(ValueError, match="sink down"):
        notify(manager(Broken()).hook.lanewise_on_stage, EVENT)


def test_a_wrapper_is_run_through_pluggy() -> None:
    calls: list[tuple[str, Any]] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def lanewise_on_stage(self, event: StageTiming) -> Iterator[None]:
            calls.append(("before", event))
            result = yield
            calls.append(("after", event))
            return result

    pm = manager(Recorder("a", calls), Wrapper())
    notify(pm.hook.lanewise_on_stage, EVENT)
    assert [name for name, _ in calls] == ["before", "a", "after"]


def test_other_arguments_are_run_through_pluggy() -> None:
    seen: list[str] = []

    class NoArguments:
        @hookimpl
        def lanewise_on_stage(self) -> None:
            seen.append("called")

    notify(manager(NoArguments()).hook.lanewise_on_stage, EVENT)
    assert seen == ["called"]


def test_a_plain_callable_gets_the_event_by_keyword() -> None:
    seen: list[Any] = []
    notify(lambda *, event: seen.append(event), EVENT)
    assert seen == [EVENT]
