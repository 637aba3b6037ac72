"""Job records and per-document manifests, on a :class:`~lanewise.ingest.kv.KeyValue`.

Keys (``{t}`` a tenant, ``{d}`` a document id's digest, ``{j}`` a job id):

- ``lw:ingest:job:{j}`` hash: tenant, created/finished times, totals, index version
- ``lw:ingest:job:{j}:items`` hash: item number -> JSON status (done/skipped/failed + reason)
- ``lw:ingest:doc:{t}:{d}`` hash: the committed document (its key, chunk count, source)
- ``lw:ingest:doc:{t}:{d}:chunks`` set: the chunk ids stored for it now (its manifest)
- ``lw:ingest:stage:{j}:{d}`` set / ``...:batches`` set / ``...:plan`` hash: a document
  being (re)built by job ``{j}``: its new chunk ids, embedded batches, expected batches
- ``lw:ingest:hash:{t}`` hash: document key -> document id (duplicate detection)

Everything is written so that a task run twice (redelivered after a worker
died) leaves the same state as a task run once. Each task reads and writes in as few
trips as it can (pipelines, a ``MULTI`` for a commit, and one script,
``lua/only_batch.lua``, for a new document's only batch): a document made of one batch
costs two trips, the parse task's first read and its embed task's script.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from lanewise.ingest.kv import KeyValue

PREFIX = "lw:ingest"
FINISHED = frozenset({"done", "skipped", "failed"})
COMPLETION_GRACE_S = 5.0
"""A job whose items all finished, untouched this long, lost its completion to a crash
(the task finishing the last item marks it complete a moment later otherwise)."""


def _lua(name: str) -> str:
    return resources.files("lanewise.ingest").joinpath("lua", name).read_text()


def _doc(tenant: str, document_id: str) -> str:
    digest = hashlib.sha256(f"{tenant}\x00{document_id}".encode()).hexdigest()[:32]
    return f"{tenant}:{digest}"


def _str(value: Any) -> str | None:
    """A stored string, None for a missing one (and for "": a key whose document went)."""
    return str(value) if value else None


@dataclass
class JobView:
    """A job as ``GET /v1/ingest/jobs/{id}`` shows it."""

    id: str
    tenant: str
    status: str
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    index_version: int | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.failed

    def as_dict(self, *, with_items: bool = False) -> dict[str, Any]:
        out = {
            "id": self.id,
            "status": self.status,
            "totals": {
                "items": self.total,
                "done": self.done,
                "skipped": self.skipped,
                "failed": self.failed,
                "chunks_added": self.chunks_added,
                "chunks_removed": self.chunks_removed,
            },
            "progress": (self.finished / self.total) if self.total else 1.0,
            "failures": self.failures,
            "index_version": self.index_version,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }
        if with_items:
            out["items"] = self.items
        return out


class IngestState:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        register = getattr(kv, "register_script", None)  # Redis; SQLite runs the steps
        self._only_batch = None if register is None else register(_lua("only_batch.lua"))
        self._complete_job = None if register is None else register(_lua("complete_job.lua"))

    # Jobs ---------------------------------------------------------------------------------

    def create_job(
        self,
        *,
        tenant: str,
        items: Sequence[str],
        job_id: str | None = None,
        payloads: Sequence[dict[str, Any]] = (),
    ) -> str:
        job = job_id or uuid.uuid4().hex
        now = time.time()
        head = {"tenant": tenant, "total": len(items), "created_at": now, "touched_at": now}
        run, _ = self.broker_run()
        if run is not None:
            head["broker_run"] = run
        self.kv.hset(f"{PREFIX}:job:{job}", mapping=head)
        self.kv.hset(
            f"{PREFIX}:job:{job}:names", mapping={str(n): name for n, name in enumerate(items)}
        )
        if payloads:
            self.kv.hset(
                f"{PREFIX}:job:{job}:payloads",
                mapping={str(n): json.dumps(p) for n, p in enumerate(payloads)},
            )
        return job

    def stalled_items(
        self, job: str, after_s: float, after_restart_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Pending items of a job nothing has touched for ``after_s`` (claimed once per period).

        Their tasks may be lost (a worker SIGKILLed between taking a message from Redis and
        recording it as unacknowledged): the caller sends them again, which is safe. When
        Redis restarted since the job was created (or last sent again for a restart), the
        wait is ``after_restart_s`` instead, once per restart: a message Redis took off a
        queue as it went down is gone, and nothing else would bring it back. A job whose
        items have all finished but that was never marked complete is completed here.
        """
        head = self.kv.hgetall(f"{PREFIX}:job:{job}")
        if not head or "finished_at" in head:
            return []
        untouched = time.time() - float(head.get("touched_at", head["created_at"]))
        if untouched >= COMPLETION_GRACE_S and self.kv.hlen(f"{PREFIX}:job:{job}:items") >= int(
            head["total"]
        ):
            # Every item finished, but the worker that finished the last one died before
            # marking the job complete (its redelivered task returns early: the item is done).
            self.complete_job(job, str(head["tenant"]))
            return []
        wait = after_s if after_restart_s is None else min(after_s, after_restart_s)
        if untouched < wait:
            return []
        if untouched < after_s:
            run, up_s = self.broker_run()
            if run is None or head.get("broker_run", run) == run:
                return []  # no restart since: wait the whole period
            if min(untouched, up_s) < wait:
                return []  # the workers may still be reconnecting and putting tasks back
            self.kv.hset(f"{PREFIX}:job:{job}", "broker_run", run)  # once per restart
        self.touch(job)  # the next resend waits another period
        done = self.kv.hgetall(f"{PREFIX}:job:{job}:items")
        payloads = self.kv.hgetall(f"{PREFIX}:job:{job}:payloads")
        return [json.loads(p) for n, p in sorted(payloads.items()) if n not in done]

    def broker_run(self) -> tuple[str | None, float]:
        """This Redis's run id (a new one after every restart) and uptime; None on SQLite."""
        info = getattr(self.kv, "info", None)
        if info is None:
            return None, 0.0
        server = info("server")
        return str(server["run_id"]), float(server["uptime_in_seconds"])

    def touch(self, job: str) -> None:
        self.kv.hset(f"{PREFIX}:job:{job}", "touched_at", time.time())

    def job_tenant(self, job: str) -> str | None:
        value = self.kv.hget(f"{PREFIX}:job:{job}", "tenant")
        return None if value is None else str(value)

    def finish_item(
        self,
        job: str,
        item: int,
        status: str,
        *,
        drop: tuple[str, str] | None = None,
        **details: Any,
    ) -> tuple[bool, dict[str, Any] | None]:
        """Record an item's outcome once: whether that made the whole job finished, and the
        task payload the item was sent with (one trip). ``drop``: (tenant, document id)
        whose stage goes in the same trip, after the outcome is recorded (a commit cut
        short before that is completed by its task redelivered, which needs the stage)."""
        pipe = self.kv.pipeline(transaction=False)
        return self._finish_item(pipe, job, item, status, drop=drop, **details)

    @staticmethod
    def _finish_item(
        pipe: Any,
        job: str,
        item: int,
        status: str,
        *,
        drop: tuple[str, str] | None = None,
        **details: Any,
    ) -> tuple[bool, dict[str, Any] | None]:
        """Run ``pipe`` with :meth:`finish_item`'s commands appended; its result."""
        assert status in FINISHED
        record = json.dumps({"status": status, **details})
        pipe.hset(f"{PREFIX}:job:{job}", "touched_at", time.time())
        pipe.hsetnx(f"{PREFIX}:job:{job}:items", str(item), record)
        pipe.hget(f"{PREFIX}:job:{job}", "total")
        pipe.hlen(f"{PREFIX}:job:{job}:items")
        pipe.hget(f"{PREFIX}:job:{job}:payloads", str(item))
        if drop is not None:
            base = f"{PREFIX}:stage:{job}:{_doc(*drop)}"
            pipe.delete(base, f"{base}:batches", f"{base}:plan")
        results = pipe.execute()
        total, finished, payload = results[len(results) - (5 if drop is None else 6) :][2:5]
        return int(finished) >= int(total or 0), None if payload is None else json.loads(payload)

    def complete_job(self, job: str, tenant: str) -> int:
        """Mark the job finished and bump the tenant's index version, once per job.

        ``finished_at`` (which makes the job read as completed) never lands before
        ``index_version``: a reader polling the job used to see it completed without its
        version, between two commands. On Redis one script does both. On SQLite (in
        process) the same steps run one by one: the first version set on the job wins
        (another caller's draw is left unused), then ``finished_at``; a caller that dies
        in between leaves a job the stall check completes with the version it has."""
        key = f"{PREFIX}:job:{job}"
        counter = f"{PREFIX}:index_version:{tenant}"
        if self._complete_job is not None:
            return int(self._complete_job(keys=[key, counter], args=[time.time()]))
        if self.kv.hget(key, "finished_at") is None:
            self.kv.hsetnx(key, "index_version", int(self.kv.incr(counter)))
            self.kv.hsetnx(key, "finished_at", time.time())
        return int(self.kv.hget(key, "index_version") or 0)

    def index_version(self, tenant: str) -> int:
        return int(self.kv.get(f"{PREFIX}:index_version:{tenant}") or 0)

    def job(self, job: str) -> JobView | None:
        head = self.kv.hgetall(f"{PREFIX}:job:{job}")
        if not head:
            return None
        names = self.kv.hgetall(f"{PREFIX}:job:{job}:names")
        raw_items = self.kv.hgetall(f"{PREFIX}:job:{job}:items")
        view = JobView(
            id=job,
            tenant=str(head["tenant"]),
            status="running",
            total=int(head["total"]),
            chunks_added=int(head.get("chunks_added", 0)),
            chunks_removed=int(head.get("chunks_removed", 0)),
            created_at=float(head["created_at"]),
            finished_at=float(head["finished_at"]) if "finished_at" in head else None,
            index_version=int(head["index_version"]) if "index_version" in head else None,
        )
        for n in range(view.total):
            raw = raw_items.get(str(n))
            item = {"item": n, "name": names.get(str(n), ""), "status": "pending"}
            if raw is not None:
                item.update(json.loads(raw))
            view.items.append(item)
            status = item["status"]
            if status == "done":
                view.done += 1
            elif status == "skipped":
                view.skipped += 1
            elif status == "failed":
                view.failed += 1
                view.failures.append(
                    {"item": n, "name": item["name"], "reason": item.get("reason", "")}
                )
        if view.finished_at is not None:
            view.status = "completed"
        elif not raw_items:
            view.status = "queued"
        return view

    # Documents ----------------------------------------------------------------------------

    def document(self, tenant: str, document_id: str) -> dict[str, str]:
        return {
            str(k): str(v)
            for k, v in self.kv.hgetall(f"{PREFIX}:doc:{_doc(tenant, document_id)}").items()
        }

    def stage(
        self,
        job: str,
        tenant: str,
        document_id: str,
        ids: Sequence[str],
        sent: int,
        plan: dict[str, Any] | None = None,
    ) -> tuple[list[bool], dict[str, str], int]:
        """Add ``ids`` to the document's new chunk set, count ``sent`` batches and add
        ``plan`` to its plan (with the last batch); returns which of the ids its current
        manifest already holds (no need to embed those) and its progress (one trip)."""
        doc = _doc(tenant, document_id)
        base = f"{PREFIX}:stage:{job}:{doc}"
        pipe = self.kv.pipeline(transaction=False)
        pipe.smismember(f"{PREFIX}:doc:{doc}:chunks", list(ids))
        pipe.sadd(base, *ids)
        pipe.hset(f"{base}:plan", mapping={**(plan or {}), "sent": sent})
        known, _, _, plan_now, done = self._progress(pipe, base)
        return [bool(int(v)) for v in known], plan_now, done

    def plan(
        self, job: str, tenant: str, document_id: str, **fields: Any
    ) -> tuple[dict[str, str], int]:
        """Add ``fields`` to the document's plan; returns its progress after (one trip)."""
        base = f"{PREFIX}:stage:{job}:{_doc(tenant, document_id)}"
        pipe = self.kv.pipeline(transaction=False)
        pipe.hset(f"{base}:plan", mapping=fields)
        _, plan, done = self._progress(pipe, base)
        return plan, done

    def fail(self, job: str, tenant: str, document_id: str, reason: str) -> None:
        """Mark the document failed in this job (the first reason stays)."""
        self.kv.hsetnx(f"{PREFIX}:stage:{job}:{_doc(tenant, document_id)}:plan", "failed", reason)

    def claim_commit(self, job: str, tenant: str, document_id: str, claim: str) -> Changes | None:
        """The document's changes (see :class:`Changes`) for the first claimant, and for that
        claimant again (a redelivered task); None for any other (one trip)."""
        pipe = self.kv.pipeline(transaction=False)
        self._claim(pipe, job, tenant, document_id, claim)
        return self._claimed(claim, *pipe.execute())

    def only_batch_done(
        self, job: str, tenant: str, document_id: str, claim: str
    ) -> tuple[dict[str, str], int, Changes | None]:
        """:meth:`batch_done` and :meth:`claim_commit` in one trip, for a document's only
        batch (number 0): no other batch can complete the document, so the task recording
        it claims the commit at once (a redelivered parse may claim it too: the first wins).
        The document's progress, and its changes when the claim is this task's."""
        base = f"{PREFIX}:stage:{job}:{_doc(tenant, document_id)}"
        pipe = self.kv.pipeline(transaction=True)
        pipe.sadd(f"{base}:batches", 0)
        pipe.hset(f"{PREFIX}:job:{job}", "touched_at", time.time())
        self._claim(pipe, job, tenant, document_id, claim)
        _, _, *claimed, plan, done = self._progress(pipe, base)
        return plan, done, self._claimed(claim, *claimed)

    def only_batch(
        self,
        job: str,
        tenant: str,
        document_id: str,
        claim: str,
        *,
        ids: Sequence[str],
        plan: dict[str, Any],
    ) -> OnlyBatch:
        """A new document's only batch, stored: :meth:`stage` (its ids, its ``plan``),
        :meth:`only_batch_done` and, when the claim is this task's and the commit deletes
        nothing, :meth:`commit`, in one trip on Redis (a script, atomic). The parse task
        sent the batch without staging it (nothing to look up for a document never
        committed), so a document made of one batch costs two trips, not four. On
        SQLite (in process, no network) the same steps run one by one."""
        item = int(plan["item"])
        record = json.dumps({"status": "done", "chunks": int(plan["chunks"])})
        if self._only_batch is None:
            if self.kv.hget(f"{PREFIX}:job:{job}:items", str(item)) is not None:
                return OnlyBatch("finished")
            self.stage(job, tenant, document_id, ids, sent=1, plan=plan)
            now, _, changes = self.only_batch_done(job, tenant, document_id, claim)
            if changes is None or "failed" in now or changes.stale:
                return OnlyBatch("left")
            job_done, payload = self.commit(
                job, tenant, document_id, changes, key=str(plan["key"]), source=document_id,
                chunks=int(plan["chunks"]), item=item,
            )  # fmt: skip
            return OnlyBatch("committed", job_done, payload)
        doc = _doc(tenant, document_id)
        base = f"{PREFIX}:stage:{job}:{doc}"
        keys = [
            f"{PREFIX}:job:{job}", f"{PREFIX}:job:{job}:items", f"{PREFIX}:job:{job}:payloads",
            base, f"{base}:batches", f"{base}:plan", f"{PREFIX}:doc:{doc}:chunks",
            f"{PREFIX}:doc:{doc}", f"{PREFIX}:hash:{tenant}",
        ]  # fmt: skip
        fields = [str(v) for kv in {**plan, "sent": 1}.items() for v in kv]
        args = [item, claim, time.time(), plan["key"], document_id, job, record]
        reply = self._only_batch(keys=keys, args=[*args, len(fields) // 2, *fields, *ids])
        if int(reply[0]) == 0:
            return OnlyBatch("finished")
        if int(reply[0]) == 1:
            return OnlyBatch("left")
        total, finished = int(reply[1] or 0), int(reply[2])
        payload = json.loads(reply[3]) if len(reply) > 3 and reply[3] else None
        return OnlyBatch("committed", finished >= total, payload)

    @staticmethod
    def _claim(pipe: Any, job: str, tenant: str, document_id: str, claim: str) -> None:
        doc = _doc(tenant, document_id)
        plan = f"{PREFIX}:stage:{job}:{doc}:plan"
        pipe.hsetnx(plan, "committer", claim)
        pipe.hget(plan, "committer")
        pipe.smembers(f"{PREFIX}:stage:{job}:{doc}")
        pipe.smembers(f"{PREFIX}:doc:{doc}:chunks")
        pipe.hget(f"{PREFIX}:doc:{doc}", "key")

    @staticmethod
    def _claimed(
        claim: str, _: Any, committer: Any, staged_raw: Any, current_raw: Any, old_key: Any
    ) -> Changes | None:
        if str(committer) != claim:
            return None
        staged = {str(v) for v in staged_raw}
        current = {str(v) for v in current_raw}
        return Changes(
            added=staged - current,
            stale=current - staged,
            staged=bool(staged),
            old_key=None if old_key is None else str(old_key),
        )

    def planned(self, job: str, tenant: str, document_id: str) -> dict[str, str]:
        raw = self.kv.hgetall(f"{PREFIX}:stage:{job}:{_doc(tenant, document_id)}:plan")
        return {str(k): str(v) for k, v in raw.items()}

    def batch_done(
        self, job: str, tenant: str, document_id: str, batch: int
    ) -> tuple[bool, dict[str, str], int]:
        """Record an embedded batch: False when it was recorded before (a redelivery), and
        the document's progress after it (one trip)."""
        base = f"{PREFIX}:stage:{job}:{_doc(tenant, document_id)}"
        pipe = self.kv.pipeline(transaction=False)
        pipe.sadd(f"{base}:batches", batch)
        pipe.hset(f"{PREFIX}:job:{job}", "touched_at", time.time())
        new, _, plan, done = self._progress(pipe, base)
        return bool(new), plan, done

    def progress(self, job: str, tenant: str, document_id: str) -> tuple[dict[str, str], int]:
        """The document's plan in this job and how many of its batches are in (one trip)."""
        base = f"{PREFIX}:stage:{job}:{_doc(tenant, document_id)}"
        plan, done = self._progress(self.kv.pipeline(transaction=False), base)
        return plan, done

    def resume(
        self, job: str, tenant: str, document_id: str, item: int, key: str | None = None
    ) -> tuple[str | None, dict[str, str], int, str | None, str | None]:
        """What a parse task starts from: the item's status, the document's progress and,
        for a document ``key``, the document's committed key and the tenant's document
        with ``key`` (unchanged and duplicate detection; one trip)."""
        pipe = self.kv.pipeline(transaction=False)
        pipe.hget(f"{PREFIX}:job:{job}:items", str(item))
        pipe.hget(f"{PREFIX}:doc:{_doc(tenant, document_id)}", "key")
        pipe.hget(f"{PREFIX}:hash:{tenant}", key or "")
        raw, current, twin, plan, done = self._progress(
            pipe, f"{PREFIX}:stage:{job}:{_doc(tenant, document_id)}"
        )
        status = None if raw is None else str(json.loads(raw)["status"])
        return status, plan, done, _str(current), _str(twin if key else None)

    @staticmethod
    def _progress(pipe: Any, base: str) -> tuple[Any, ...]:
        """Run ``pipe`` with the plan and the batch count appended: (*earlier, plan, done)."""
        pipe.hgetall(f"{base}:plan")
        pipe.scard(f"{base}:batches")
        *earlier, plan, done = pipe.execute()
        return (*earlier, {str(k): str(v) for k, v in plan.items()}, int(done))

    def batches_done(self, job: str, tenant: str, document_id: str) -> int:
        return int(self.kv.scard(f"{PREFIX}:stage:{job}:{_doc(tenant, document_id)}:batches"))

    def commit(
        self,
        job: str,
        tenant: str,
        document_id: str,
        changes: Changes,
        *,
        key: str,
        source: str,
        chunks: int,
        item: int,
    ) -> tuple[bool, dict[str, Any] | None]:
        """The staged chunk set becomes the document's manifest, the job counts the chunks
        added and removed, the document's record changes and the item is finished (as
        :meth:`finish_item`, whose result this returns): all at once (one trip, MULTI on
        Redis), so a commit redelivered after it finds the item finished and counts nothing.

        Until then the stage and the plan stay, so a commit cut short (its worker died
        before this) is completed by the same task redelivered.
        """
        doc = _doc(tenant, document_id)
        pipe = self.kv.pipeline(transaction=True)
        if chunks == 0 or changes.staged:  # else switched over by an earlier run of this commit
            if chunks == 0:
                pipe.delete(f"{PREFIX}:doc:{doc}:chunks")
            else:
                pipe.rename(f"{PREFIX}:stage:{job}:{doc}", f"{PREFIX}:doc:{doc}:chunks")
            if changes.added:
                pipe.hincrby(f"{PREFIX}:job:{job}", "chunks_added", len(changes.added))
            if changes.stale:
                pipe.hincrby(f"{PREFIX}:job:{job}", "chunks_removed", len(changes.stale))
        pipe.hset(
            f"{PREFIX}:doc:{doc}",
            mapping={"key": key, "document_id": document_id, "source": source, "job": job},
        )
        if changes.old_key is not None and changes.old_key != key:
            pipe.hset(f"{PREFIX}:hash:{tenant}", changes.old_key, "")
        pipe.hset(f"{PREFIX}:hash:{tenant}", key, document_id)
        return self._finish_item(pipe, job, item, "done", drop=(tenant, document_id), chunks=chunks)


@dataclass(frozen=True)
class OnlyBatch:
    """What :meth:`IngestState.only_batch` did: ``finished`` (the item was, before: a
    redelivered task), ``left`` (the commit is the caller's to do: claimed by another task,
    failed, or chunks to delete from the store first), or ``committed`` (with
    :meth:`IngestState.finish_item`'s result)."""

    outcome: Literal["finished", "left", "committed"]
    job_done: bool = False
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class Changes:
    """What a document's commit changes: chunks this job adds (staged, not in the manifest),
    ones now stale (in the manifest, not staged), whether the stage is still there (a commit
    that got past the switch-over renamed it into the manifest), and the document's key
    before this commit."""

    added: set[str]
    stale: set[str]
    staged: bool
    old_key: str | None
