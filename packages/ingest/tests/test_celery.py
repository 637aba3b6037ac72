"""The pipeline on Celery: real Redis, real `lanewise worker` processes, real pgvector.

Each test writes a lanewise.toml, starts workers from it, and submits jobs from
this process through the same service the gateway uses; what the store holds
is read back through core's VectorStore contract and compared exactly with
what the embedded executor stores for the same files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from lanewise.core.settings import load_settings
from lanewise.ingest.celery_app import CeleryDispatch
from lanewise.ingest.local import local_files
from lanewise.ingest.pipeline import run_parse
from lanewise.ingest.service import IngestService, Upload, open_service, runtime_from
from lanewise.ingest.testing import LANEWISE, Worker
from lanewise.ingest.wiring import open_components

from .conftest import FAILED
from .helpers import DIM, TENANT, stored, write_config


@pytest.fixture
def config(tmp_path: Path, redis_server: Any, pg_url: str) -> Path:
    return write_config(
        tmp_path / "lanewise.toml",
        redis_url=redis_server.url,
        pg_url=pg_url,
        data=tmp_path / "data",
    )


@pytest.fixture
def start_worker(tmp_path: Path, config: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    started: list[Worker] = []

    def start(name: str = "w1", concurrency: int = 2, config: Path = config) -> Worker:
        worker = Worker(config, tmp_path / f"{name}.log", name, concurrency).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    if request.node.stash.get(FAILED, False):
        for worker in started:  # shown in the failure report ("Captured stdout teardown")
            print(f"----- {worker.name} ({worker.log}) -----\n{worker.output()}")


@contextlib.asynccontextmanager
async def open_lane(config: Path) -> AsyncIterator[tuple[Any, IngestService]]:
    """Components and the ingest service of ``config``, as the gateway builds them."""
    settings = load_settings(config)
    parts, close = open_components(settings)
    service = open_service(settings, parts)
    try:
        # The store checks its schema (DDL) on first use: here, before workers write, not
        # at the final read while redelivered duplicates may still be upserting (that DDL
        # can deadlock with them: a 503 the pipeline retries, these reads would not).
        await parts.vector_store().count(tenant=TENANT)
        yield parts, service
    finally:
        await service.aclose()
        await close()


@pytest.fixture
async def lane(config: Path) -> AsyncIterator[tuple[Any, IngestService]]:
    async with open_lane(config) as opened:
        yield opened


async def reference(tmp_path: Path, files: list[Any]) -> dict[str, str]:
    """What the embedded executor stores for the same files: the expected chunk set."""
    settings = load_settings(
        None,
        data_dir=tmp_path / "reference",
        retrieval={"embedder": {"kind": "noop", "dimension": DIM}},
        ingest={"chunker": {"kind": "tokens", "size": 12, "overlap": 3, "tokenizer": "words"}},
    )
    parts, close = open_components(settings)
    service = open_service(settings, parts)
    try:
        await service.submit(tenant=TENANT, files=files, wait=True)
        return await stored(parts.vector_store(), TENANT, DIM)
    finally:
        await service.aclose()
        await close()


async def wait_job(service: IngestService, job: str, within_s: float = 120) -> Any:
    for _ in range(int(within_s / 0.1)):
        view = await asyncio.to_thread(service.job, job, tenant=TENANT)
        if view is not None and view.status == "completed":
            return view
        await asyncio.sleep(0.1)
    stuck = [
        (i["name"], service.state.progress(job, TENANT, i["name"]))
        for i in (view.items if view else [])
        if i["status"] == "pending"
    ]
    raise AssertionError(
        f"job {job} did not complete; pending (plan, batches in): {stuck}; "
        f"broker: {broker_state(service)}"
    )


def broker_state(service: IngestService) -> dict[str, Any]:
    """What Redis holds for the workers: queued and unacknowledged messages, its clients."""
    kv: Any = service.state.kv
    return {
        "queued": {q: kv.llen(q) for q in ("ingest", "embed")},
        "unacked": kv.hlen("unacked"),
        "clients": [(c.get("name"), c.get("cmd"), c.get("age")) for c in kv.client_list()],
    }


async def wait_progress(service: IngestService, job: str, at_least: int) -> None:
    for _ in range(1200):
        view = await asyncio.to_thread(service.job, job, tenant=TENANT)
        if view is not None and view.finished >= at_least:
            assert view.status != "completed", "the job finished before the fault was injected"
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the job made no progress")


def many_files(root: Path, n: int, words: int) -> Path:
    root.mkdir()
    for i in range(n):
        lines = [
            f"file {i} line {j} " + " ".join(f"w{i}x{j}x{k}" for k in range(9)) + "."
            for j in range(words // 12)
        ]
        (root / f"doc{i:03d}.txt").write_text("\n".join(lines) + "\n")
    return root


async def test_mixed_corpus_on_workers_then_unchanged_reingest(
    lane: tuple[Any, IngestService], start_worker: Any, corpus: Path, tmp_path: Path
) -> None:
    parts, service = lane
    start_worker("w1")
    files = local_files([corpus], corpus)
    first = await wait_job(service, await service.submit(tenant=TENANT, files=files))
    assert (first.done, first.skipped, first.failed) == (5, 0, 2)
    assert {f["name"] for f in first.failures} == {"broken.pdf", "photo.bin"}
    got = await stored(parts.vector_store(), TENANT, DIM)
    assert got == await reference(tmp_path, files)
    second = await wait_job(service, await service.submit(tenant=TENANT, files=files))
    assert (second.done, second.skipped, second.failed) == (0, 5, 2)
    assert await stored(parts.vector_store(), TENANT, DIM) == got
    assert second.index_version == first.index_version + 1
    # A changed document through the workers: exactly the embedded executor's chunk set.
    (corpus / "notes.txt").write_text("Rewritten notes.\n\nNothing about brokers now.\n")
    third = await wait_job(service, await service.submit(tenant=TENANT, files=files))
    assert (third.done, third.skipped) == (1, 4)
    assert await stored(parts.vector_store(), TENANT, DIM) == await reference(
        tmp_path / "again", files
    )


# 600 words a file: five batches each, sent to the embed queue; 100: one batch each,
# embedded inside the parse task (ingest.inline_embed), so the parse is what comes back
# (more files: they go faster, and the job must still be running at each fault).
@pytest.mark.parametrize(
    ("n", "words"), [(24, 600), (120, 100)], ids=["batches-queued", "one-batch-inline"]
)
async def test_sigkill_of_worker_processes_mid_job_loses_and_duplicates_nothing(
    lane: tuple[Any, IngestService], start_worker: Any, tmp_path: Path, n: int, words: int
) -> None:
    parts, service = lane
    root = many_files(tmp_path / "many", n, words)
    files = local_files([root], root)
    expected = await reference(tmp_path, files)
    worker = start_worker("w1")
    job = await service.submit(tenant=TENANT, files=files)
    await wait_progress(service, job, 3)
    killed = worker.kill_pool()  # the pool children die mid-task; their tasks come back
    assert killed
    # And a whole worker, main process included: its unacknowledged tasks are redelivered
    # (visibility timeout) to the worker started after it.
    await wait_progress(service, job, 6)
    worker.kill()
    start_worker("w2")
    view = await wait_job(service, job, within_s=180)
    assert (view.done, view.failed) == (n, 0)
    got = await stored(parts.vector_store(), TENANT, DIM)
    assert got == expected  # every chunk present, and (ids are keys) exactly once
    assert await parts.vector_store().count(tenant=TENANT) == len(expected)


@pytest.mark.parametrize(
    ("n", "words"), [(16, 600), (80, 100)], ids=["batches-queued", "one-batch-inline"]
)
async def test_workers_resume_by_themselves_after_redis_restarts(
    lane: tuple[Any, IngestService],
    start_worker: Any,
    tmp_path: Path,
    redis_server: Any,
    n: int,
    words: int,
) -> None:
    parts, service = lane
    root = many_files(tmp_path / "many", n, words)
    files = local_files([root], root)
    expected = await reference(tmp_path, files)
    worker = start_worker("w1")
    job = await service.submit(tenant=TENANT, files=files)
    await wait_progress(service, job, 2)
    # A real restart of the broker (SIGTERM; Redis writes its dump on the way down, as a
    # deployed Redis with persistence would), with the workers left alone.
    service.state.kv.config_set("save", "3600 1")  # type: ignore[attr-defined]
    redis_server.restart()
    view = await wait_job(service, job, within_s=180)
    assert (view.done, view.failed) == (n, 0)
    assert await stored(parts.vector_store(), TENANT, DIM) == expected
    # And they keep consuming new work afterwards (no stalled consumer, celery#9054/#8030).
    (root / "late.txt").write_text("A file sent after the restart.\n")
    late = await wait_job(
        service, await service.submit(tenant=TENANT, files=local_files([root / "late.txt"], root))
    )
    assert late.done == 1
    # The same worker did it, through its own reconnection (it never gave up, see broker.py).
    assert worker.process.poll() is None
    assert "Connection to broker lost" in worker.output()
    assert "Unrecoverable error" not in worker.output()


def test_worker_refuses_the_embedded_store_and_a_short_visibility_timeout(
    tmp_path: Path, redis_server: Any, pg_url: str
) -> None:
    plain = tmp_path / "embedded.toml"
    plain.write_text(f'data_dir = "{tmp_path / "d"}"\nredis_url = "{redis_server.url}"\n')
    result = subprocess.run(
        [LANEWISE, "--config", str(plain), "worker"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "one process only" in result.stdout + result.stderr
    assert "pgvector" in result.stdout + result.stderr
    short = write_config(
        tmp_path / "short.toml",
        redis_url=redis_server.url,
        pg_url=pg_url,
        data=tmp_path / "d2",
        extra="",
    )
    short.write_text(
        short.read_text().replace("visibility_timeout_s = 10", "visibility_timeout_s = 9")
    )
    result = subprocess.run(
        [LANEWISE, "--config", str(short), "worker"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "celery#5508" in result.stdout + result.stderr


@pytest.fixture
def hour_visibility(config: Path) -> Path:
    """An hour of visibility timeout: the ordinary stall recovery would wait two hours."""
    config.write_text(
        config.read_text().replace("visibility_timeout_s = 10", "visibility_timeout_s = 3600")
    )
    return config


async def test_a_task_lost_as_redis_restarts_is_sent_again_within_a_task_time_limit(
    hour_visibility: Path, start_worker: Any, corpus: Path, tmp_path: Path, redis_server: Any
) -> None:
    async with open_lane(hour_visibility) as (parts, service):
        files = local_files([corpus / "guide.md", corpus / "notes.txt"], corpus)
        job = await service.submit(tenant=TENANT, files=files)
        kv: Any = service.state.kv
        kv.config_set("save", "3600 1")
        redis_server.restart()
        # Taken off their queue as Redis went down, never delivered: lost for good.
        assert kv.llen("ingest") == 2
        kv.delete("ingest")
        start_worker("w1")
        # Redis restarted since the job was sent: once nothing has moved for one task time
        # limit (5 s here) since it came back, the pending items are sent again.
        view = await wait_job(service, job, within_s=60)
        assert (view.done, view.failed) == (2, 0)
        assert await stored(parts.vector_store(), TENANT, DIM) == await reference(tmp_path, files)


async def test_a_lost_task_is_sent_again_once_the_job_stalls(
    lane: tuple[Any, IngestService], start_worker: Any, corpus: Path, tmp_path: Path
) -> None:
    parts, service = lane
    files = local_files([corpus / "guide.md", corpus / "notes.txt"], corpus)
    job = await service.submit(tenant=TENANT, files=files)
    # Lose every queued message, as a worker SIGKILLed between taking a message from Redis
    # and recording it as unacknowledged would: nothing will ever redeliver them.
    kv: Any = service.state.kv
    assert kv.llen("ingest") == 2
    kv.delete("ingest")
    start_worker("w1")
    # Polling the job (as GET /v1/ingest/jobs/{id} does) finds it untouched for twice the
    # visibility timeout and sends its pending items again.
    view = await wait_job(service, job, within_s=120)
    assert (view.done, view.failed) == (2, 0)
    assert await stored(parts.vector_store(), TENANT, DIM) == await reference(tmp_path, files)


async def test_spooled_uploads_are_removed_once_their_items_finish(
    lane: tuple[Any, IngestService], start_worker: Any, corpus: Path
) -> None:
    _, service = lane
    spool = service.spool_dir()  # what POST /v1/ingest writes uploads into
    uploads = []
    for n, name in enumerate(["guide.md", "broken.pdf", "photo.bin"]):
        target = spool / f"{n:06d}"
        target.write_bytes((corpus / name).read_bytes())
        uploads.append(Upload(name, target))
    start_worker("w1")
    view = await wait_job(service, await service.submit(tenant=TENANT, files=uploads, spool=spool))
    assert (view.done, view.failed) == (1, 2)  # done and dead-lettered items alike
    assert not spool.exists()
    assert service.spool.exists()  # only the job's own directory went
    # Files named by path (the CLI, server-side paths) are the user's: never removed.
    files = local_files([corpus / "notes.txt"], corpus)
    assert (await wait_job(service, await service.submit(tenant=TENANT, files=files))).done == 1
    assert (corpus / "notes.txt").exists()


def without_inline_embed(config: Path) -> Path:
    split = config.with_name("split.toml")
    split.write_text(config.read_text().replace("[ingest]\n", "[ingest]\ninline_embed = false\n"))
    return split


def change(path: Path) -> None:
    path.write_text(path.read_text().replace("line 1 ", "line one "))


def received(worker: Worker, task: str) -> int:
    """How many ``task`` messages the worker took (its log's "received" lines)."""
    return sum(
        f"Task lanewise.ingest.{task}[" in line and "] received" in line
        for line in worker.output().splitlines()
    )


async def test_one_batch_documents_are_embedded_inside_their_parse_tasks(
    lane: tuple[Any, IngestService], start_worker: Any, config: Path, tmp_path: Path
) -> None:
    # 100 words a file: ~12 chunks, one batch of 16. A worker consuming both queues embeds
    # it in the parse task (no embed message); with inline_embed = false it sends it.
    parts, service = lane
    root = many_files(tmp_path / "small", 8, 100)
    files = local_files([root], root)
    expected = await reference(tmp_path, files)
    worker = start_worker("w1")
    view = await wait_job(service, await service.submit(tenant=TENANT, files=files))
    assert (view.done, view.failed) == (8, 0)
    assert await stored(parts.vector_store(), TENANT, DIM) == expected
    assert (received(worker, "parse"), received(worker, "embed")) == (8, 0)
    worker.stop()
    worker = start_worker("w2", config=without_inline_embed(config))
    for f in files:  # every document changed: a staged only batch each
        change(f.path)
    view = await wait_job(service, await service.submit(tenant=TENANT, files=files))
    assert (view.done, view.failed) == (8, 0)
    assert await stored(parts.vector_store(), TENANT, DIM) == await reference(
        tmp_path / "again", files
    )
    assert (received(worker, "parse"), received(worker, "embed")) == (8, 8)


class _Killed(BaseException):
    """Stands for SIGKILL: no handler sees it, nothing after it runs."""


class _DiesOnDelete:
    """The real store, but the process 'dies' as the commit deletes stale chunks."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def delete(self, **_: Any) -> None:
        raise _Killed


async def test_a_parse_redelivered_after_its_inline_embed_claimed_the_commit_finishes_it(
    lane: tuple[Any, IngestService], config: Path, tmp_path: Path
) -> None:
    # A changed one-batch document: its embed, inline, claims the commit, then the commit
    # dies deleting the old version's chunks. Only the parse message comes back (there is
    # no embed message): it must be allowed to finish that commit, or the job never ends.
    parts, service = lane
    runtime = runtime_from(parts, load_settings(config), service.state)
    runtime.offload = False
    root = tmp_path / "docs"
    root.mkdir()
    doc = root / "a.md"
    doc.write_text("# A\n\nThe first version of this document, with its own words.\n")
    files = local_files([root], root)

    async def parse(rt: Any, job: str, item: Any) -> None:
        await run_parse(rt, item, CeleryDispatch(service.executor.app, inline=rt))

    job, items = await service.create(tenant=TENANT, files=files)
    await parse(runtime, job, items[0])
    assert service.job(job, tenant=TENANT).status == "completed"  # type: ignore[union-attr]
    first = await stored(parts.vector_store(), TENANT, DIM)
    doc.write_text("# A\n\nThe second version: other words entirely, nothing kept.\n")
    job, items = await service.create(tenant=TENANT, files=files)
    dying = dataclasses.replace(runtime, store=_DiesOnDelete(runtime.store))
    with pytest.raises(_Killed):
        await parse(dying, job, items[0])
    assert service.job(job, tenant=TENANT).status != "completed"  # type: ignore[union-attr]
    await parse(runtime, job, items[0])  # the redelivered parse
    view = service.job(job, tenant=TENANT)
    assert view is not None
    assert (view.status, view.done, view.chunks_removed) == ("completed", 1, len(first))
    assert await stored(parts.vector_store(), TENANT, DIM) == await reference(tmp_path, files)
