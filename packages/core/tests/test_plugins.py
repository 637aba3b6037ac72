"""The plugin manager: entry points, the LANEWISE_PLUGINS allowlist, and start-up checks."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pluggy
import pytest
from lanewise.core.container import build_components
from lanewise.core.errors import ConfigError
from lanewise.core.hookspecs import hookimpl
from lanewise.core.plugins import (
    collect,
    get_plugin_manager,
    installed_plugins,
    loaded_plugin_names,
)
from lanewise.core.settings import load_settings
from lanewise.core.versions import installed_distributions

WORKSPACE_PLUGINS = {"core", "inference", "retrieval", "ingest", "governance", "observe"}


@pytest.fixture(autouse=True)
def no_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANEWISE_PLUGINS", raising=False)


@pytest.fixture
def hello_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A third-party plugin installed for real: a dist-info with an entry point on sys.path."""
    (tmp_path / "lanewise_hello_plugin.py").write_text(
        textwrap.dedent(
            """
            from lanewise.core.hookspecs import hookimpl

            class Hello:
                name = "hello"

            @hookimpl
            def lanewise_register_rerankers(register):
                register("hello", lambda ctx: Hello(), default=True)
            """
        )
    )
    info = tmp_path / "lanewise_hello-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lanewise-hello\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text("[lanewise]\nhello = lanewise_hello_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "hello"


def test_entry_points_of_every_workspace_lane_are_loaded():
    assert set(installed_plugins()) >= WORKSPACE_PLUGINS
    assert installed_plugins()["core"] == "lanewise.core.builtin"
    pm = get_plugin_manager()
    assert set(loaded_plugin_names(pm)) >= WORKSPACE_PLUGINS


def test_a_third_party_entry_point_is_loaded_and_used(hello_dist):
    pm = get_plugin_manager()
    assert hello_dist in loaded_plugin_names(pm)
    assert "hello" in collect(pm, "reranker").names()
    assert installed_distributions()["lanewise-hello"] == "0.3.1"
    # Only core and hello, so other lanes' rerankers cannot compete for the default.
    container = build_components(load_settings(None), get_plugin_manager([hello_dist]))
    assert container.reranker().name == "hello"  # default=True, nothing configured


def test_allowlist_from_env_loads_only_those(monkeypatch, hello_dist):
    monkeypatch.setenv("LANEWISE_PLUGINS", "hello")
    assert loaded_plugin_names(get_plugin_manager()) == ["core", "hello"]


def test_allowlist_argument_wins_over_env(monkeypatch):
    monkeypatch.setenv("LANEWISE_PLUGINS", "observe")
    assert loaded_plugin_names(get_plugin_manager(["inference"])) == ["core", "inference"]


def test_core_is_always_loaded():
    assert loaded_plugin_names(get_plugin_manager([])) == ["core"]


def test_unknown_allowlisted_name_lists_installed(monkeypatch):
    monkeypatch.setenv("LANEWISE_PLUGINS", "inference,retreival")
    with pytest.raises(ConfigError) as info:
        get_plugin_manager()
    detail = info.value.detail
    assert "LANEWISE_PLUGINS names retreival, which are not installed" in detail
    for name in WORKSPACE_PLUGINS:
        assert name in detail.split("installed: ")[1]


class Misspelled:
    @hookimpl
    def lanewise_regster_backends(self, register: Any) -> None:
        raise AssertionError("never called")


def test_check_pending_catches_a_misspelled_hookimpl():
    with pytest.raises(ConfigError) as info:
        get_plugin_manager([], extra=[Misspelled()])
    detail = info.value.detail
    assert "plugin Misspelled implements unknown hook(s)" in detail
    assert "lanewise_regster_backends (did you mean lanewise_register_backends?)" in detail


def test_unmarked_helper_methods_are_not_hooks():
    class Helper:
        def lanewise_helper(self) -> None:  # no @hookimpl: ignored by pluggy
            pass

    get_plugin_manager([], extra=[Helper()])


class Dup:
    def __init__(self, name: str, *, default: bool = False) -> None:
        self.name = name
        self.default = default

    @hookimpl
    def lanewise_register_embedders(self, register: Any) -> None:
        register(self.name, lambda ctx: self, default=self.default)


def test_two_plugins_registering_one_name_is_an_error():
    pm = get_plugin_manager([], extra=[Dup("mini"), Dup("mini")])
    with pytest.raises(ConfigError) as info:
        collect(pm, "embedder")
    assert "two plugins register an embedder named 'mini'" in info.value.detail
    assert "LANEWISE_PLUGINS" in info.value.detail


def test_registering_one_plugin_object_twice_is_refused():
    plugin = Dup("a")
    with pytest.raises(ValueError, match="already registered"):
        get_plugin_manager([], extra=[plugin, plugin])


@pytest.mark.parametrize("name", ["", "has space", "semi;colon"])
def test_register_rejects_bad_names(name):
    pm = get_plugin_manager([], extra=[Dup(name)])
    with pytest.raises(ConfigError, match="must be alphanumeric"):
        collect(pm, "embedder")


def test_default_true_is_selected_when_nothing_is_configured():
    first, second = Dup("first"), Dup("second", default=True)
    container = build_components(load_settings(None), get_plugin_manager([], extra=[first, second]))
    assert container.embedder() is second


def test_configured_kind_wins_over_the_default():
    first, second = Dup("first"), Dup("second", default=True)
    settings = load_settings(None, retrieval={"embedder": {"kind": "first"}})
    container = build_components(settings, get_plugin_manager([], extra=[first, second]))
    assert container.embedder() is first


def test_no_default_and_nothing_configured_builds_nothing():
    container = build_components(load_settings(None), get_plugin_manager([], extra=[Dup("a")]))
    assert container.embedder() is None


def test_two_defaults_is_an_error_naming_both():
    pm = get_plugin_manager([], extra=[Dup("a", default=True), Dup("b", default=True)])
    container = build_components(load_settings(None), pm)
    with pytest.raises(ConfigError) as info:
        container.embedder()
    assert info.value.detail == (
        "retrieval.embedder: several plugins mark a default embedder (a, b); "
        "choose one with retrieval.embedder.kind"
    )


def test_the_manager_is_a_pluggy_manager_with_every_spec():
    pm = get_plugin_manager([])
    assert isinstance(pm, pluggy.PluginManager)
    assert pm.project_name == "lanewise"
    assert hasattr(pm.hook, "lanewise_register_backends")
