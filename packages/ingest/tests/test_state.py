"""Job state on its own: what recovery does with a job a crash left behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from lanewise.ingest.kv import SqliteKeyValue
from lanewise.ingest.state import COMPLETION_GRACE_S, PREFIX, Changes, IngestState


@pytest.fixture(params=["sqlite", "redis"])
def any_state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IngestState]:
    """Job state on each key-value store it runs on: SQLite (embedded) and a real Redis."""
    if request.param == "sqlite":
        kv = SqliteKeyValue(tmp_path / "state.db")
        yield IngestState(kv)
        kv.close()
        return
    server = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield IngestState(client)
    client.close()


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


def test_a_documents_only_batch_claims_its_commit_in_the_trip_that_records_it(
    any_state: IngestState,
) -> None:
    state = any_state
    job = state.create_job(tenant="acme", items=["a.md"], payloads=[{"item": 0, "name": "a.md"}])
    plan = {"item": 0, "expected": 1, "key": "k1", "chunks": 2}
    known, _, done = state.stage(job, "acme", "a.md", ["c1", "c2"], sent=1, plan=plan)
    assert known == [False, False]
    assert done == 0
    progress, done, changes = state.only_batch_done(job, "acme", "a.md", "batch-0")
    assert (progress["expected"], done) == ("1", 1)
    assert changes == Changes(added={"c1", "c2"}, stale=set(), staged=True, old_key=None)
    # A redelivered parse, seeing every batch in, does not get the commit; the same task
    # redelivered (its worker died mid-commit) does.
    assert state.claim_commit(job, "acme", "a.md", "parse") is None
    assert state.only_batch_done(job, "acme", "a.md", "batch-0")[2] == changes
    # The commit finishes the item in the same trip and drops the stage with it.
    job_done, payload = state.commit(
        job, "acme", "a.md", changes, key="k1", source="a.md", chunks=2, item=0
    )
    assert job_done
    assert payload == {"item": 0, "name": "a.md"}
    view = state.job(job)
    assert view is not None
    assert (view.items[0]["status"], view.items[0]["chunks"], view.chunks_added) == ("done", 2, 2)
    assert state.progress(job, "acme", "a.md") == ({}, 0)
    # A later parse learns in its first trip that the document is unchanged, or a duplicate.
    assert state.resume(job, "acme", "a.md", 0, "k1") == ("done", {}, 0, "k1", "a.md")
    assert state.resume(job, "acme", "b.md", 1, "k1") == (None, {}, 0, None, "a.md")
    assert state.resume(job, "acme", "b.md", 1) == (None, {}, 0, None, None)
