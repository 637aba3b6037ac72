"""``timed_stage``: the one place a stage becomes a ``lanewise_on_stage`` event."""

from __future__ import annotations

from typing import Any

import pytest
from lanewise.core.stages import timed_stage


def test_a_stage_emits_its_attributes_and_outcome(core_pm: Any, echo_plugin: Any) -> None:
    hook = core_pm(echo_plugin).hook
    with timed_stage(hook, "r1", "search", {"k": 3}) as attrs:
        attrs["hits"] = 2
    with pytest.raises(RuntimeError), timed_stage(hook, "r2", "rerank", {}):
        raise RuntimeError("reranker down")
    first, second = echo_plugin.stages
    assert (first.request_id, first.stage, first.ok) == ("r1", "search", True)
    assert first.attributes == {"k": 3, "hits": 2}
    assert first.duration_s >= 0
    assert (second.request_id, second.stage, second.ok) == ("r2", "rerank", False)


def test_no_hook_emits_nothing_and_still_yields_the_attributes() -> None:
    with timed_stage(None, "r1", "embed", {"cached": False}) as attrs:
        attrs["cached"] = True
    assert attrs == {"cached": True}
