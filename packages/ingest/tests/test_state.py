"""Job state on its own: what recovery does with a job a crash left behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from lanewise.ingest.kv import SqliteKeyValue
from lanewise.ingest.state import COMPLETION_GRACE_S, PREFIX, Changes, IngestState, _doc


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


def _manifest(state: IngestState, tenant: str, document_id: str) -> tuple[dict[str, str], set[str]]:
    """The document's committed record and manifest (the chunk ids stored for it)."""
    record = state.document(tenant, document_id)
    chunks = state.kv.smembers(f"{PREFIX}:doc:{_doc(tenant, document_id)}:chunks")
    return record, {str(v) for v in chunks}


def _stage_keys(state: IngestState, job: str) -> list[str]:
    kv: object = state.kv
    if isinstance(kv, SqliteKeyValue):
        rows = kv._run(  # the test reads what is left behind, whatever the type
            "SELECT name FROM hashes WHERE name LIKE ? UNION SELECT name FROM sets"
            " WHERE name LIKE ?",
            (f"{PREFIX}:stage:{job}:%", f"{PREFIX}:stage:{job}:%"),
        )
        return sorted(r[0] for r in rows)
    return sorted(state.kv.keys(f"{PREFIX}:stage:{job}:*"))  # type: ignore[attr-defined]


def test_a_new_documents_only_batch_is_staged_and_committed_in_one_call(
    any_state: IngestState,
) -> None:
    state = any_state
    payloads = [{"item": 0, "name": "a.md", "spooled": True}, {"item": 1, "name": "b.md"}]
    job = state.create_job(tenant="acme", items=["a.md", "b.md"], payloads=payloads)
    plan = {"item": 0, "expected": 1, "key": "k1", "chunks": 2}
    only = state.only_batch(job, "acme", "a.md", "batch-0", ids=["c1", "c2"], plan=plan)
    assert (only.outcome, only.job_done, only.payload) == ("committed", False, payloads[0])
    record, manifest = _manifest(state, "acme", "a.md")
    assert manifest == {"c1", "c2"}
    assert (record["key"], record["document_id"], record["source"], record["job"]) == (
        "k1", "a.md", "a.md", job,
    )  # fmt: skip
    view = state.job(job)
    assert view is not None
    assert (view.done, view.chunks_added, view.items[0]) == (
        1, 2, {"item": 0, "name": "a.md", "status": "done", "chunks": 2},
    )  # fmt: skip
    assert _stage_keys(state, job) == []  # the stage went with the commit
    assert state.kv.hget(f"{PREFIX}:hash:acme", "k1") == "a.md"  # duplicates find it
    # The same task redelivered (its worker died after the trip) changes nothing.
    again = state.only_batch(job, "acme", "a.md", "batch-0", ids=["c1", "c2"], plan=plan)
    assert again.outcome == "finished"
    assert state.job(job).chunks_added == 2  # type: ignore[union-attr]
    assert _manifest(state, "acme", "a.md")[1] == {"c1", "c2"}
    # The job's last item says the job is done.
    plan_b = {"item": 1, "expected": 1, "key": "k2", "chunks": 1}
    last = state.only_batch(job, "acme", "b.md", "batch-0", ids=["c3"], plan=plan_b)
    assert (last.outcome, last.job_done, last.payload) == ("committed", True, payloads[1])


def test_an_only_batch_that_would_leave_stale_chunks_or_failed_leaves_the_commit(
    any_state: IngestState,
) -> None:
    state = any_state
    first = state.create_job(tenant="acme", items=["a.md"], payloads=[{"item": 0}])
    plan = {"item": 0, "expected": 1, "key": "k1", "chunks": 2}
    state.only_batch(first, "acme", "a.md", "batch-0", ids=["c1", "c2"], plan=plan)
    # Another job committed the document meanwhile (the parse saw none): c2 would go stale,
    # and the store must drop it before the switch-over, so the caller commits.
    job = state.create_job(tenant="acme", items=["a.md"], payloads=[{"item": 0}])
    plan = {"item": 0, "expected": 1, "key": "k2", "chunks": 2}
    only = state.only_batch(job, "acme", "a.md", "batch-0", ids=["c1", "c3"], plan=plan)
    assert only.outcome == "left"
    assert _manifest(state, "acme", "a.md")[1] == {"c1", "c2"}  # not switched over
    changes = state.claim_commit(job, "acme", "a.md", "batch-0")  # staged, planned, claimed
    assert changes == Changes(added={"c3"}, stale={"c2"}, staged=True, old_key="k1")
    assert state.progress(job, "acme", "a.md")[1] == 1
    assert state.claim_commit(job, "acme", "a.md", "parse") is None
    # A failed document is the caller's to fail (its added chunks leave the store).
    failed = state.create_job(tenant="acme", items=["b.md"], payloads=[{"item": 0}])
    state.fail(failed, "acme", "b.md", "refused")
    plan = {"item": 0, "expected": 1, "key": "k3", "chunks": 1}
    only = state.only_batch(failed, "acme", "b.md", "batch-0", ids=["c4"], plan=plan)
    assert only.outcome == "left"
    assert state.document("acme", "b.md") == {}


class _Watched:
    """The key-value store, reading the job's hash (through ``reader``) after every
    command made through it, as a client polling the job would."""

    def __init__(self, kv: object, reader: object, job_key: str) -> None:
        self._kv, self._reader, self._job_key = kv, reader, job_key
        self.seen: list[dict[str, str]] = []

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self._kv, name)
        if not callable(attribute):
            return attribute

        def call(*args: object, **kwargs: object) -> object:
            result = attribute(*args, **kwargs)
            if callable(result):  # a registered script: watch its calls too
                return lambda *a, **k: self._after(result(*a, **k))
            return self._after(result)

        return call

    def _after(self, result: object) -> object:
        self.seen.append(dict(self._reader.hgetall(self._job_key)))  # type: ignore[attr-defined]
        return result


def test_a_finished_job_is_never_seen_without_its_index_version(
    any_state: IngestState,
) -> None:
    """``finished_at`` (which makes the job read as completed) never lands before
    ``index_version`` (on Redis both in one script): a poller saw the first without the
    second between two commands (a test on the Celery workers failed on exactly that,
    under load)."""
    job = any_state.create_job(tenant="acme", items=["a.md"], payloads=[{"item": 0}])
    key = f"{PREFIX}:job:{job}"
    watched = _Watched(any_state.kv, any_state.kv, key)
    state = IngestState(watched)  # type: ignore[arg-type]
    assert state.complete_job(job, "acme") == 1
    assert state.complete_job(job, "acme") == 1  # once per job
    assert state.index_version("acme") == 1
    assert watched.seen, "the job was never read back"
    together = not isinstance(any_state.kv, SqliteKeyValue)
    for head in watched.seen:
        assert "index_version" in head or "finished_at" not in head, head
        if together:
            assert ("finished_at" in head) == ("index_version" in head), head
    view = state.job(job)
    assert view is not None
    assert (view.status, view.index_version) == ("completed", 1)


def test_a_job_whose_completer_died_after_taking_its_version_keeps_that_version(
    tmp_path: Path,
) -> None:
    """SQLite runs the completion's steps one by one: a caller that set the job's version
    and died before ``finished_at`` leaves a job the next call completes with that version."""
    state = IngestState(SqliteKeyValue(tmp_path / "state.db"))
    job = state.create_job(tenant="acme", items=["a.md"], payloads=[{"item": 0}])
    key = f"{PREFIX}:job:{job}"
    state.kv.hsetnx(key, "index_version", int(state.kv.incr(f"{PREFIX}:index_version:acme")))
    assert state.job(job).status != "completed"  # type: ignore[union-attr]
    assert state.complete_job(job, "acme") == 1
    view = state.job(job)
    assert view is not None
    assert (view.status, view.index_version) == ("completed", 1)
    assert state.complete_job(job, "acme") == 1
