"""docs/observe.md documents every setting and every metric of the lane."""

from __future__ import annotations

import re
from pathlib import Path

from lanewise.observe.metrics import METRIC_NAMES
from lanewise.observe.settings import ObserveSettings

DOC = (Path(__file__).resolve().parents[3] / "docs" / "observe.md").read_text()


def test_every_setting_is_documented():
    documented = set(re.findall(r"^\| `observe\.([a-z_]+)` \|", DOC, flags=re.M))
    assert documented == set(ObserveSettings.model_fields)


def test_every_metric_is_documented():
    documented = set(re.findall(r"^\| `(lanewise_[a-z_]+)` \|", DOC, flags=re.M))
    assert documented == set(METRIC_NAMES)
