"""docs/observe.md lists every metric of the lane (core's tests check the settings keys)."""

from __future__ import annotations

import re
from pathlib import Path

from lanewise.governance.refusals import REFUSALS
from lanewise.inference.pools.state import BREAKER_STATE, POOL_IN_FLIGHT
from lanewise.ingest.queue_state import QUEUE_DEPTH
from lanewise.observe.metrics import METRIC_NAMES

DOC = (Path(__file__).resolve().parents[3] / "docs" / "observe.md").read_text()


LANE_STATE = {BREAKER_STATE, POOL_IN_FLIGHT, QUEUE_DEPTH, REFUSALS + "_total"}
"""What other lanes report through ``lanewise_collect_state`` (their names, their modules)."""


def test_every_metric_is_documented():
    documented = set(re.findall(r"^\| `(lanewise_[a-z_]+)` \|", DOC, flags=re.M))
    assert documented == set(METRIC_NAMES) | LANE_STATE
