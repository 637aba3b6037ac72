"""Job state on its own: what recovery does with a job a crash left behind."""

from __future__ import annotations

import time
from pathlib import Path

from lanewise.ingest.kv import SqliteKeyValue
from lanewise.ingest.state import COMPLETION_GRACE_S, PREFIX, IngestState


def test_a_job_whose_last_item_finished_before_a_crash_is_completed_by_recovery(
    tmp_path: Path,
) -> None:
    state = IngestState(SqliteKeyValue(tmp_path / "state.db"))
    payloads = [{"item": n, "name": name} for n, name in enumerate(["a.md", "b.md"])]
    job = state.create_job(tenant="acme", items=["a.md", "b.md"], payloads=payloads)
    state.finish_item(job, 0, "done", chunks=3)
    done, _ = state.finish_item(job, 1, "skipped", reason="unchanged")
    assert done  # the task that got this would now mark the job complete: it died instead
    assert state.job(job).finished_at is None  # type: ignore[union-attr]
    # Within the grace period the finishing task may still be on its way: nothing happens.
    assert state.stalled_items(job, after_s=3600.0) == []
    assert state.job(job).finished_at is None  # type: ignore[union-attr]
    state.kv.hset(f"{PREFIX}:job:{job}", "touched_at", time.time() - COMPLETION_GRACE_S - 1)
    # Nothing is pending, so nothing is sent again, and the job is completed exactly once.
    assert state.stalled_items(job, after_s=3600.0) == []
    view = state.job(job)
    assert view is not None
    assert view.finished_at is not None
    assert view.status == "completed"
    assert view.index_version == state.index_version("acme") == 1
    assert state.stalled_items(job, after_s=3600.0) == []
    assert state.index_version("acme") == 1


def test_recovery_leaves_a_job_with_pending_items_running(tmp_path: Path) -> None:
    state = IngestState(SqliteKeyValue(tmp_path / "state.db"))
    payloads = [{"item": n, "name": name} for n, name in enumerate(["a.md", "b.md"])]
    job = state.create_job(tenant="acme", items=["a.md", "b.md"], payloads=payloads)
    state.finish_item(job, 0, "done", chunks=3)
    state.kv.hset(f"{PREFIX}:job:{job}", "touched_at", time.time() - COMPLETION_GRACE_S - 1)
    assert state.stalled_items(job, after_s=3600.0) == []  # not stalled long enough to resend
    assert state.job(job).finished_at is None  # type: ignore[union-attr]
    assert state.stalled_items(job, after_s=1.0) == [payloads[1]]  # stalled: item 1 again
