"""The shipped test helpers are opt-in and change nothing global when imported."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points


def test_no_pytest11_entry_point_loads_lanewise_into_other_projects() -> None:
    assert not [ep for ep in entry_points(group="pytest11") if ep.value.startswith("lanewise")]


def test_importing_the_fixtures_sets_no_environment_and_no_hypothesis_profile() -> None:
    code = (
        "import os, hypothesis\n"
        "before = dict(os.environ)\n"
        "profile = hypothesis.settings._current_profile\n"
        "import lanewise.core.testing.plugin, lanewise.core.testing\n"
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n"
        "assert hypothesis.settings._current_profile == profile\n"
        "print('clean')\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"
