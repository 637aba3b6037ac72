"""docs/observe.md lists every metric of the lane (core's tests check the settings keys)."""

from __future__ import annotations

import re
from pathlib import Path

from lanewise.observe.metrics import METRIC_NAMES

DOC = (Path(__file__).resolve().parents[3] / "docs" / "observe.md").read_text()


def test_every_metric_is_documented():
    documented = set(re.findall(r"^\| `(lanewise_[a-z_]+)` \|", DOC, flags=re.M))
    assert documented == set(METRIC_NAMES)
