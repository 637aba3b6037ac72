"""The pytest plugin's own pieces: hypothesis profiles and the small fixtures."""

from __future__ import annotations

from hypothesis import settings
from lanewise.core.hookspecs import hookimpl
from lanewise.core.plugins import loaded_plugin_names


def test_hypothesis_profiles_are_registered():
    assert settings.get_profile("ci").max_examples == 100
    assert settings.get_profile("dev").max_examples == 25
    assert settings.get_profile("ci").deadline is None


def test_lanewise_settings_keeps_data_in_a_temp_dir(lanewise_settings, tmp_path):
    s = lanewise_settings(gateway={"port": 0})
    assert s.data_dir == tmp_path / "data"
    assert s.gateway.port == 0


def test_register_plugin_adds_a_plugin_for_one_test(register_plugin):
    class Mine:
        @hookimpl
        def lanewise_on_stage(self, event):
            pass

    mine = Mine()
    pm = register_plugin(mine, allowlist=[])
    assert pm.is_registered(mine)
    assert "core" in loaded_plugin_names(pm)
    assert not register_plugin(allowlist=[]).is_registered(mine)  # a fresh manager each time
