"""Settings: lanewise.toml, LANEWISE_* overrides, and one clear error for a bad config."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lanewise.core.container import build_components
from lanewise.core.errors import ConfigError
from lanewise.core.hookspecs import hookimpl
from lanewise.core.settings import LANE_PACKAGES, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("LANEWISE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray ./lanewise.toml


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_without_a_file():
    settings = load_settings()
    assert settings.gateway.port == 8000
    assert settings.gateway.host == "127.0.0.1"
    assert settings.plugins is None
    assert settings.models == {}


def test_explicit_path(tmp_path):
    path = write(
        tmp_path / "x.toml",
        """
        default_model = "small"
        [gateway]
        port = 9001
        [models.small]
        kind = "echo"
        delay_s = 0.5
        """,
    )
    settings = load_settings(path)
    assert settings.gateway.port == 9001
    assert settings.default_model == "small"
    assert settings.models["small"].kind == "echo"
    assert settings.models["small"].options == {"delay_s": 0.5}


def test_lanewise_config_env(tmp_path, monkeypatch):
    path = write(tmp_path / "conf.toml", "[gateway]\nport = 9002\n")
    monkeypatch.setenv("LANEWISE_CONFIG", str(path))
    assert load_settings().gateway.port == 9002


def test_lanewise_toml_in_cwd_is_picked_up(tmp_path):
    write(tmp_path / "lanewise.toml", "[gateway]\nport = 9003\n")
    assert load_settings().gateway.port == 9003


def test_missing_config_file_is_one_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_env_overrides_file_including_nested(tmp_path, monkeypatch):
    path = write(
        tmp_path / "lanewise.toml",
        """
        redis_url = "redis://file"
        [gateway]
        port = 9004
        host = "0.0.0.0"
        """,
    )
    monkeypatch.setenv("LANEWISE_REDIS_URL", "redis://env")
    monkeypatch.setenv("LANEWISE_GATEWAY__PORT", "9005")
    settings = load_settings(path)
    assert settings.redis_url == "redis://env"
    assert settings.gateway.port == 9005
    assert settings.gateway.host == "0.0.0.0"  # the rest of the section still comes from the file


def test_plugins_env_is_a_comma_list(monkeypatch):
    monkeypatch.setenv("LANEWISE_PLUGINS", " retrieval, inference ,,")
    assert load_settings().plugins == ["retrieval", "inference"]


@given(
    names=st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=12),
        max_size=6,
    ),
    pad=st.sampled_from(["", " ", "  "]),
)
def test_plugins_env_round_trips(names, pad):
    raw = ",".join(f"{pad}{n}{pad}" for n in names)
    with mock.patch.dict(os.environ, {"LANEWISE_PLUGINS": raw}):
        plugins = load_settings().plugins
    assert plugins == (names or None)


@given(port=st.integers(min_value=-(2**20), max_value=2**20))
def test_port_env_is_validated(port):
    with mock.patch.dict(os.environ, {"LANEWISE_GATEWAY__PORT": str(port)}):
        if 0 <= port <= 65535:
            assert load_settings().gateway.port == port
        else:
            with pytest.raises(ConfigError) as info:
                load_settings()
            assert "gateway.port" in info.value.detail
            assert info.value.detail.count("\n") == 1  # one message, one bad key


def test_unknown_key_names_it_and_lists_the_allowed_keys(tmp_path):
    path = write(tmp_path / "lanewise.toml", "[gateway]\nprot = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    detail = info.value.detail
    assert str(path) in detail
    assert "gateway.prot: unknown key" in detail
    assert "allowed: api_keys, auth_failure_limit, auth_failure_window_s" in detail
    assert "host, keepalive_timeout_s, linger_s, max_body_bytes" in detail


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path / "lanewise.toml", 'defualt_model = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "defualt_model: unknown key; allowed:" in info.value.detail
    assert "default_model" in info.value.detail


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path / "lanewise.toml", '[gateway]\nport = "abc"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "gateway.port" in info.value.detail
    assert "'abc'" in info.value.detail


def test_every_bad_key_in_one_error(tmp_path):
    path = write(
        tmp_path / "lanewise.toml",
        """
        [gateway]
        port = "abc"
        workers = 0
        [retrieval]
        default_k = 0
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    detail = info.value.detail
    for key in ("gateway.port", "gateway.workers", "retrieval.default_k"):
        assert key in detail
    assert "greater than or equal to 1" in detail  # the allowed values


def test_literal_error_lists_allowed_values():
    with pytest.raises(ConfigError) as info:
        load_settings(
            gateway={"api_keys": [{"sha256": "a" * 64, "tenant": "t", "priority": "urgent"}]}
        )
    assert "gateway.api_keys.0.priority" in info.value.detail
    assert "'interactive' or 'batch'" in info.value.detail


def test_toml_syntax_error_is_a_config_error(tmp_path):
    path = write(tmp_path / "lanewise.toml", "[gateway\nport = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in info.value.detail


class Stores:
    @hookimpl
    def lanewise_register_vector_stores(self, register: Any) -> None:
        register("memory", lambda ctx: object(), default=True)
        register("disk", lambda ctx: object())


def test_unknown_component_kind_fails_at_start_up(tmp_path, core_pm):
    path = write(tmp_path / "lanewise.toml", '[retrieval.vector_store]\nkind = "nope"\n')
    settings = load_settings(path)
    with pytest.raises(ConfigError) as info:
        build_components(settings, core_pm(Stores()))
    assert info.value.detail == (
        "retrieval.vector_store.kind = 'nope' is not a known vector store; allowed: disk, memory"
    )


def test_unknown_component_kind_without_any_plugin_says_what_to_install(core_pm):
    settings = load_settings(None, retrieval={"reranker": {"kind": "nope"}})
    with pytest.raises(ConfigError) as info:
        build_components(settings, core_pm())
    assert "retrieval.reranker.kind = 'nope'" in info.value.detail
    assert "install a lanewise lane package" in info.value.detail


def test_unknown_model_kind(core_pm, echo_plugin):
    settings = load_settings(None, models={"m": {"kind": "gpt"}})
    with pytest.raises(ConfigError) as info:
        build_components(settings, core_pm(echo_plugin))
    assert info.value.detail == "models.m.kind = 'gpt' is not a known backend; allowed: echo"


def test_unknown_default_model(core_pm, echo_plugin):
    settings = load_settings(None, default_model="big", models={"small": {"kind": "echo"}})
    with pytest.raises(ConfigError) as info:
        build_components(settings, core_pm(echo_plugin))
    assert info.value.detail == "default_model = 'big' is not a configured model; allowed: small"


def test_bad_component_option_names_the_key(core_pm, echo_plugin):
    settings = load_settings(None, models={"m": {"kind": "echo", "speed": 3}})
    with pytest.raises(ConfigError) as info:
        build_components(settings, core_pm(echo_plugin))
    assert "speed" in info.value.detail
    assert "allowed: delay_s" in info.value.detail


SECTIONS = {
    "": ["data_dir", "database_url", "default_model", "gateway", "models", "retrieval"],
    "gateway": ["api_keys", "cors_origins", "host", "max_body_bytes", "port"],
    "retrieval": ["default_k", "embedder", "max_k", "reranker", "vector_store"],
}


@given(
    section=st.sampled_from(sorted(SECTIONS)),
    key=st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True),
)
def test_any_unknown_key_is_named_with_the_allowed_keys(section, key):
    settings_cls = type(load_settings(None))
    known = (
        settings_cls.model_fields
        if not section
        else settings_cls.model_fields[section].annotation.model_fields
    )
    if key in known or (not section and key in LANE_PACKAGES):
        return
    overrides = {key: 1} if not section else {section: {key: 1}}
    with pytest.raises(ConfigError) as info:
        load_settings(None, **overrides)
    [line] = info.value.detail.splitlines()[1:]
    dotted = f"{section}.{key}" if section else key
    assert line.strip().startswith(f"{dotted}: unknown key; allowed: ")
    allowed = line.split("allowed: ")[1].split(", ")
    assert set(SECTIONS[section]) <= set(allowed)
    assert allowed == sorted(allowed)
