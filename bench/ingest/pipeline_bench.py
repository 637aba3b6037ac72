"""Ingest pipeline benchmark: Celery workers vs direct calls, side by side in one run.

Real pieces only: a ``redis-server`` and a PostgreSQL 16 + pgvector (``pgserver``)
started for the run and pinned to CPU 0, ``lanewise worker`` processes (one pool child,
pinned to CPU 1 with ``taskset``), MiniLM int8 on onnxruntime (one thread). The driver
runs on CPU 0; the direct calls it compares against run pinned to CPU 1 too, after the
worker has gone idle, so both sides get the same core.

1. **Embedding pipeline efficiency**: documents/s and chunks/s end to end
   (submit → job complete: sniff, parse, chunk, embed, upsert to pgvector, commit)
   vs MiniLM embedding the very same chunk texts in one process, in the same
   batches (per document, at most 64). Each side runs twice, interleaved, and the
   faster run counts (other jobs share the machine). Target: pipeline chunks/s
   >= 0.85x the raw embedder's. (The worker is the default one: each of these
   documents fits in one batch, so its parse task embeds it, see 2.)
2. **Pipeline overhead**: with the no-op embedder, the full pipeline's chunks/s on a
   corpus (200 files of about ten chunks: one embed batch each), against Celery on the
   same worker (same pool, queue settings and pinning), measured in the same rounds, as
   three ratios, each with target >= 0.9:

   * ``ratio_vs_noop_tasks``, the issue's own words: pipeline chunks/s over raw Celery
     no-op task throughput, i.e. one no-op task (``lanewise.ingest.ping``, a small
     payload: a chunk id) per chunk, tasks/s; only the last task counts itself (one pool
     child takes the queue in order), so the others do nothing at all;
   * ``ratio``, stricter: Celery carrying the very messages the pipeline sends (a parse
     message per file, and on the split path an embed message per batch, with their own
     payloads: paths, chunk ids, texts, metadata) to tasks that do nothing but count
     themselves; pipeline chunks/s over Celery's chunks/s on the same messages. (Runs A and
     B divided by no-op tasks/s with 64-chunk embed messages, mixing units; the first
     ratio now uses one task per chunk, as the issue words it.)
   * ``ratio_vs_celery_plus_work`` = (Celery on the same messages + chunking + store
     writes) / pipeline: the full pipeline does work a no-op task does not and cannot
     skip, reading and tokenizing every file into chunks and writing every chunk to the
     store (pgvector: one transaction per batch, the row upsert with its HNSW and GIN
     index updates plus the hybrid search's lexicon statistics). So the same rounds
     measure that inherent work on its own, pinned to the worker's CPU: **chunking**
     (hash, load, chunk, chunk ids of every file, in process) and **store writes** (the
     pipeline's very batches upserted straight into pgvector under a fresh tenant, no-op
     embedder included), and split the pipeline's time into Celery transport, chunking,
     store writes and the rest (**bookkeeping**: job records in Redis, publishing embed
     messages, commits, the task wrappers); 1 - this ratio is the pipeline's own overhead.

   The pipeline runs on two workers in each round, each freshly started and warmed:
   **inline** (the default, ``ingest.inline_embed``: a worker consuming both queues embeds
   a document's only batch in its parse task, so it sends 200 messages) and **split**
   (``inline_embed = false``: every batch goes to the embed queue, as with separate parse
   and embed workers; 400 messages). Each path's ``ratio`` and
   ``ratio_vs_celery_plus_work`` use its own messages. The worker's CPU seconds per run
   (main process and pool children, from ``/proc``) are recorded for both sides too: on a
   shared machine they move far less than the wall times; so are the Redis commands of
   the last round (``INFO commandstats``), a count no load moves.
3. **Peak RSS** of the worker's pool child while it ingests a generated 200 MiB
   text file (no-op embedder), with the file's MiB/s.

The overhead comparison runs ``--rounds`` times (default 3), interleaved, and reports
medians (and every run); the load average before and after is recorded.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m bench.ingest [--docs 12] [--noop-docs 200]
[--big-mib 200] [--rounds 3]``. Writes ``bench/results/ingest.json`` and
``bench/results/ingest.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lanewise.core.settings import load_settings
from lanewise.core.testing.services import RedisServer
from lanewise.ingest.blobs import Blob
from lanewise.ingest.celery_app import PING_TASK, create_celery_app
from lanewise.ingest.local import local_files
from lanewise.ingest.service import IngestService, open_service, runtime_from
from lanewise.ingest.testing import (
    Worker,
    children,
    paragraphs,
    pgvector_server,
    write_large_text,
)
from lanewise.ingest.wiring import open_components

RESULTS = Path(__file__).resolve().parents[1] / "results"
WORKER_CPU = "1"
SERVER_CPU = "0"
TENANT = "bench"


def write_config(
    path: Path,
    *,
    redis_url: str,
    pg_url: str,
    embedder: str,
    data: Path,
    table: str | None = None,
    inline: bool = True,
) -> Path:
    dim = 384 if embedder == "minilm" else 8
    options = "" if embedder == "minilm" else f"dimension = {dim}\n"
    path.write_text(
        f'data_dir = "{data}"\nredis_url = "{redis_url}"\n'
        f'[retrieval.embedder]\nkind = "{embedder}"\n{options}'
        f'[retrieval.vector_store]\nkind = "pgvector"\nurl = "{pg_url}"\n'
        f'table = "{table or f"bench_{uuid.uuid4().hex[:8]}"}"\ndimension = {dim}\n'
        f'[ingest]\nqueue = "celery"\nembed_batch = 64\ninline_embed = {str(inline).lower()}\n'
        "task_time_limit_s = 900\nvisibility_timeout_s = 1800\n"
        # No pool child is replaced during a comparison: with the default (every 1000
        # tasks, 0.5-0.7 s each time) the replacement landed in the second and third
        # pipeline runs by their position, never in a Celery run.
        "worker_max_tasks_per_child = 1000000\n"
    )
    return path


def write_corpus(root: Path, docs: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    paras = paragraphs(200)
    for i in range(docs):
        body = [f"# Document {i}\n"]
        for j in range(4):
            body.append(
                f"## Part {j}\n\n" + "\n\n".join(paras[(i * 7 + j * 3 + k) % 200] for k in range(3))
            )
        (root / f"doc{i:03d}.md").write_text("\n\n".join(body) + "\n")
    return root


async def wait_job(service: IngestService, job: str, tenant: str) -> Any:
    while True:
        view = await asyncio.to_thread(service.job, job, tenant=tenant)
        if view is not None and view.status == "completed":
            return view
        await asyncio.sleep(0.05)


async def run_job(service: IngestService, root: Path, tenant: str) -> tuple[Any, float]:
    job = await service.submit(tenant=tenant, files=local_files([root], root))
    view = await wait_job(service, job, tenant)
    return view, view.finished_at - view.created_at


async def stored_by_doc(parts: Any, tenant: str, dim: int) -> dict[str, list[Any]]:
    """document id -> the chunks the pipeline stored for it, in chunk order."""
    store = parts.vector_store()
    n = await store.count(tenant=tenant)
    hits = await store.search(tenant=tenant, vector=[1.0] + [0.0] * (dim - 1), k=n)
    by_doc: dict[str, list[Any]] = {}
    for hit in hits:
        by_doc.setdefault(hit.metadata["document_id"], []).append(hit)
    return {d: sorted(by_doc[d], key=lambda h: h.metadata["chunk"]) for d in sorted(by_doc)}


async def pipeline_batches(parts: Any, tenant: str, dim: int, batch: int) -> list[list[str]]:
    """The chunk texts the pipeline stored, in the batches it embedded them in (per document)."""
    batches = []
    for hits in (await stored_by_doc(parts, tenant, dim)).values():
        ordered = [h.text for h in hits]
        batches += [ordered[i : i + batch] for i in range(0, len(ordered), batch)]
    return batches


def postmaster_pid(pg_url: str) -> int:
    pgdata = Path(parse_qs(urlsplit(pg_url).query)["host"][0])
    return int((pgdata / "postmaster.pid").read_text().split()[0])


@contextmanager
def bench_servers(tmp: Path) -> Iterator[tuple[str, str]]:
    """A Redis and a PostgreSQL (pgvector) for a bench run, both pinned away from the
    worker's CPU (:func:`pin_servers`); yields their URLs."""
    redis = RedisServer(tmp / "redis").start()
    try:
        with pgvector_server() as pg_url:
            assert redis.process is not None
            pin_servers(pg_url, redis.process.pid)
            yield redis.url, pg_url
    finally:
        redis.stop()


def pin_servers(pg_url: str, *pids: int) -> None:
    """PostgreSQL (the postmaster and its processes; new backends inherit it), and any
    ``pids``, on CPU 0, away from the worker's: unpinned, the scheduler woke them on the CPU
    of the process writing to them, where they took turns with the worker and its child."""
    postmaster = postmaster_pid(pg_url)
    for pid in [*pids, postmaster, *children(postmaster)]:
        os.sched_setaffinity(pid, {int(SERVER_CPU)})


def pinned(cpu: str) -> Any:
    class _Pin:
        def __enter__(self) -> None:
            self.saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {int(cpu)})

        def __exit__(self, *_: Any) -> None:
            os.sched_setaffinity(0, self.saved)

    return _Pin()


async def embedding_efficiency(tmp: Path, redis_url: str, pg_url: str, docs: int) -> dict[str, Any]:
    config = write_config(
        tmp / "minilm.toml", redis_url=redis_url, pg_url=pg_url, embedder="minilm", data=tmp / "d1"
    )
    corpus = write_corpus(tmp / "corpus", docs)
    warm = write_corpus(tmp / "warm", 2)
    worker = Worker(
        config, tmp / "w-minilm.log", "minilm", concurrency=1, pin_cpus=WORKER_CPU
    ).start()
    settings = load_settings(config)
    parts, close = open_components(settings)
    service = open_service(settings, parts)
    pipeline_runs: list[float] = []
    raw_runs: list[float] = []
    try:
        await run_job(service, warm, "warm")  # the pool child loads the model first
        embedder = parts.embedder()
        await embedder.embed(["warm the in-process model too"])
        # Pipeline, raw, pipeline (another tenant: embedded again), raw: load on the shared
        # machine drifts, so each side is measured twice, interleaved, and the best kept.
        for rnd in range(2):
            view, elapsed = await run_job(service, corpus, f"{TENANT}{rnd}")
            pipeline_runs.append(elapsed)
            batches = await pipeline_batches(parts, f"{TENANT}{rnd}", 384, 64)
            texts = [t for b in batches for t in b]
            assert len(texts) == view.chunks_added, (len(texts), view.chunks_added)
            with pinned(WORKER_CPU):
                t0 = time.perf_counter()
                for b in batches:
                    await embedder.embed(b)
                raw_runs.append(time.perf_counter() - t0)
    finally:
        worker.stop()
        await service.aclose()
        await close()
    elapsed, raw = min(pipeline_runs), min(raw_runs)
    pipeline_cps = len(texts) / elapsed
    raw_cps = len(texts) / raw
    return {
        "documents": docs,
        "chunks": len(texts),
        "pipeline_s": elapsed,
        "pipeline_docs_per_s": docs / elapsed,
        "pipeline_chunks_per_s": pipeline_cps,
        "raw_embedder_s": raw,
        "raw_embedder_chunks_per_s": raw_cps,
        "pipeline_runs_s": pipeline_runs,
        "raw_runs_s": raw_runs,
        "ratio": pipeline_cps / raw_cps,
        "target": 0.85,
    }


async def pipeline_messages(
    parts: Any, root: Path, tenant: str, dim: int, batch: int
) -> list[dict[str, Any]]:
    """The messages the pipeline sent for a job: a parse payload per file, then each embed
    batch's payload (ids, texts, metadata), rebuilt from what the store holds."""
    messages: list[dict[str, Any]] = []
    for n_doc, (doc, ordered) in enumerate((await stored_by_doc(parts, tenant, dim)).items()):
        job = uuid.uuid4().hex
        messages.append(
            {"job": job, "tenant": tenant, "item": n_doc, "name": doc, "path": str(root / doc)}
        )
        for start in range(0, len(ordered), batch):
            part = ordered[start : start + batch]
            messages.append(
                {
                    "job": job,
                    "tenant": tenant,
                    "name": doc,
                    "batch": start // batch,
                    "ids": [h.id for h in part],
                    "texts": [h.text for h in part],
                    "metadata": [h.metadata for h in part],
                }
            )
    return messages


def command_calls(kv: Any, since: dict[str, int] | None = None) -> dict[str, int]:
    """Redis's count of calls per command (``INFO commandstats``), or those since ``since``."""
    now = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in kv.info("commandstats").items()}
    if since is None:
        return now
    return {k: n - since.get(k, 0) for k, n in sorted(now.items()) if n != since.get(k, 0)}


async def store_alone(parts: Any, messages: list[dict[str, Any]], tenant: str) -> float:
    """Seconds to upsert the pipeline's embed batches straight into the store (no-op
    embedder included), on the worker's CPU: the store writes any pipeline must make."""
    embedder, store = parts.embedder(), parts.vector_store()
    with pinned(WORKER_CPU):
        t0 = time.perf_counter()
        for m in messages:
            if "ids" in m:
                vectors = await embedder.embed(m["texts"])
                await store.upsert(
                    tenant=tenant, ids=m["ids"], vectors=vectors, texts=m["texts"],
                    metadata=m["metadata"],
                )  # fmt: skip
        return time.perf_counter() - t0


async def chunking_alone(runtime: Any, root: Path, tenant: str) -> tuple[float, int]:
    """Seconds to hash, load and chunk every file of ``root`` in process, on the worker's
    CPU (the pipeline's own parse code, without job state or messages); and the chunks."""
    chunks = 0
    paths = sorted(await asyncio.to_thread(lambda: list(root.iterdir())))
    with pinned(WORKER_CPU):
        t0 = time.perf_counter()
        for path in paths:
            blob = Blob(name=path.name, path=path)
            await asyncio.to_thread(blob.content_hash)
            async for batch in runtime.batches(blob, tenant):
                chunks += len(batch)
        return time.perf_counter() - t0, chunks


def send_pings(app: Any, payloads: list[Any], counter: str, *, count_each: bool) -> None:
    """Send no-op tasks as the pipeline sends its own (argument summary), each counting
    itself in ``counter``, or (``count_each`` False) only the last one: one pool child
    takes the queue in order, so the last one done means all done."""
    last = len(payloads) - 1
    for n, payload in enumerate(payloads):
        app.send_task(
            PING_TASK,
            args=[counter if count_each or n == last else None, payload],
            queue="ingest",
            argsrepr="(ping)",
            kwargsrepr="{}",
        )


async def celery_alone(
    app: Any, kv: Any, worker: Worker, payloads: list[Any], *, count_each: bool = True
) -> tuple[float, float, dict[str, int]]:
    """Seconds for the worker to run ``payloads`` as no-op tasks (from the first send to
    the last task counted), its CPU seconds, and Redis's commands meanwhile."""
    counter = f"bench:ping:{uuid.uuid4().hex}"
    wanted = len(payloads) if count_each else 1
    cpu0, calls = worker.cpu_seconds(), command_calls(kv)
    t0 = time.perf_counter()
    send_pings(app, payloads, counter, count_each=count_each)
    while int(kv.get(counter) or 0) < wanted:  # noqa: ASYNC110 - another process
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    return elapsed, worker.cpu_seconds() - cpu0, command_calls(kv, since=calls)


PATHS = ("inline", "split")
"""The no-op pipeline on a worker that embeds a document's only batch in its parse task
(``ingest.inline_embed``, the default) and on one that sends every batch to the embed
queue, as separate parse and embed workers do."""


def path_configs(tmp: Path, redis_url: str, pg_url: str) -> dict[str, Path]:
    """A no-op configuration per path (see PATHS), all writing to one new table."""
    table = f"bench_{uuid.uuid4().hex[:8]}"
    return {
        path: write_config(
            tmp / f"noop-{path}.toml",
            redis_url=redis_url,
            pg_url=pg_url,
            embedder="noop",
            data=tmp / "d2",
            table=table,
            inline=path == "inline",
        )
        for path in PATHS
    }


def path_figures(
    chunks: int,
    pipeline: list[float],
    celery: list[float],
    noop: list[float],
    store: list[float],
    chunking: list[float],
) -> dict[str, Any]:
    """One path's times and its three ratios, medians and per round (a round's parts are
    measured back to back; under load the medians can come from different rounds)."""
    med = statistics.median
    p, c, k, w = med(pipeline), med(celery), med(chunking), med(store)
    rounds = list(zip(pipeline, celery, noop, store, chunking, strict=True))
    return {
        "pipeline_s": p,
        "pipeline_chunks_per_s": chunks / p,
        "pipeline_runs_s": pipeline,
        "celery_same_messages_s": c,
        "celery_chunks_per_s": chunks / c,
        "celery_runs_s": celery,
        "ratio": c / p,
        "ratio_per_round": [cr / pr for pr, cr, *_ in rounds],
        "ratio_vs_noop_tasks": med(noop) / p,
        "ratio_vs_noop_tasks_per_round": [nr / pr for pr, _, nr, *_ in rounds],
        "ratio_vs_celery_plus_work": (c + k + w) / p,
        "ratio_vs_celery_plus_work_per_round": [
            (cr + kr + wr) / pr for pr, cr, _, wr, kr in rounds
        ],
        "breakdown_s": {
            "celery_transport": c,
            "chunking": k,
            "store_writes": w,
            "bookkeeping_and_rest": p - c - k - w,
        },
        "target": 0.9,
    }


async def overhead_and_memory(
    tmp: Path,
    redis_url: str,
    pg_url: str,
    noop_docs: int,
    big_mib: int,
    rounds: int,
    concurrency: int = 1,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``concurrency``: pool processes of the worker every no-op comparison runs on (the
    pipeline and raw Celery alike)."""
    configs = path_configs(tmp, redis_url, pg_url)
    corpus = write_corpus(tmp / "corpus-noop", noop_docs)
    warm = write_corpus(tmp / "warm-noop", 2)
    settings = load_settings(configs["inline"])
    parts, close = open_components(settings)
    service = open_service(settings, parts)
    app = create_celery_app(settings)
    worker: Worker | None = None

    async def start(path: str) -> Worker:
        """A fresh worker for ``path`` (the previous one stopped), warmed by a short job."""
        nonlocal worker
        if worker is not None:
            worker.stop()
        log = tmp / f"w-noop-{path}.log"
        worker = Worker(
            configs[path], log, f"noop-{path}", concurrency=concurrency, pin_cpus=WORKER_CPU
        )
        worker.start()
        await run_job(service, warm, f"warm-{uuid.uuid4().hex[:6]}")
        return worker

    try:
        kv: Any = service.state.kv
        runtime = runtime_from(parts, settings, service.state)
        runtime.offload = False  # as in the worker's child
        runs: dict[str, dict[str, list[float]]] = {
            p: {"pipeline": [], "celery": [], "pipeline_cpu": [], "celery_cpu": []} for p in PATHS
        }
        noop_runs: list[float] = []
        noop_cpu: list[float] = []
        store_runs: list[float] = []
        chunk_runs: list[float] = []
        commands: dict[str, dict[str, int]] = {}
        # Per round, interleaved (load drifts; the medians count): on the inline worker the
        # pipeline, Celery alone on each path's messages, the no-op tasks; the store and
        # the chunking alone; then a split worker's pipeline.
        for rnd in range(rounds):
            on = await start("inline")
            cpu0, calls = on.cpu_seconds(), command_calls(kv)
            view, elapsed = await run_job(service, corpus, f"{TENANT}{rnd}")
            runs["inline"]["pipeline"].append(elapsed)
            runs["inline"]["pipeline_cpu"].append(on.cpu_seconds() - cpu0)
            commands["pipeline_inline"] = command_calls(kv, since=calls)
            messages = await pipeline_messages(parts, corpus, f"{TENANT}{rnd}", 8, 64)
            # What each path sends: a parse message per file, and (split) each embed batch.
            sent = {"inline": [m for m in messages if "ids" not in m], "split": messages}
            for path in PATHS:
                s, cpu, commands[f"celery_{path}_messages"] = await celery_alone(
                    app, kv, on, sent[path]
                )
                runs[path]["celery"].append(s)
                runs[path]["celery_cpu"].append(cpu)
            ids = [cid for m in messages for cid in m.get("ids", [])]
            assert len(ids) == view.chunks_added, (len(ids), view.chunks_added)
            s, cpu, commands["noop_tasks"] = await celery_alone(
                app, kv, on, [{"chunk": cid} for cid in ids], count_each=False
            )
            noop_runs.append(s)
            noop_cpu.append(cpu)
            store_runs.append(await store_alone(parts, messages, f"store{rnd}"))
            chunk_s, chunked = await chunking_alone(runtime, corpus, f"chunk{rnd}")
            assert chunked == view.chunks_added, (chunked, view.chunks_added)
            chunk_runs.append(chunk_s)
            off = await start("split")
            cpu0, calls = off.cpu_seconds(), command_calls(kv)
            split_view, elapsed = await run_job(service, corpus, f"split{rnd}")
            assert split_view.chunks_added == view.chunks_added
            runs["split"]["pipeline"].append(elapsed)
            runs["split"]["pipeline_cpu"].append(off.cpu_seconds() - cpu0)
            commands["pipeline_split"] = command_calls(kv, since=calls)
        med = statistics.median
        chunks = view.chunks_added
        paths = {}
        for path in PATHS:
            r = runs[path]
            paths[path] = {
                "messages": len(sent[path]),
                **path_figures(
                    chunks, r["pipeline"], r["celery"], noop_runs, store_runs, chunk_runs
                ),
                # CPU seconds of the whole worker (main process and pool children) per run:
                # unlike the wall times, barely moved by other jobs on the machine.
                "worker_cpu_s": {
                    "pipeline": med(r["pipeline_cpu"]),
                    "celery_same_messages": med(r["celery_cpu"]),
                },
                "worker_cpu_runs_s": {
                    "pipeline": r["pipeline_cpu"],
                    "celery_same_messages": r["celery_cpu"],
                },
            }
        overhead = {
            "documents": noop_docs,
            "worker_concurrency": concurrency,
            "chunks": chunks,
            # The default path's figures at the top (as before), the split path's apart.
            **paths["inline"],
            "split": paths["split"],
            "noop_tasks": {
                "tasks": chunks,
                "seconds": med(noop_runs),
                "tasks_per_s": chunks / med(noop_runs),
                "runs_s": noop_runs,
                "worker_cpu_runs_s": noop_cpu,
            },
            "store_runs_s": store_runs,
            "chunking_runs_s": chunk_runs,
            # Redis commands of the last round (INFO commandstats; the pipelines' include the
            # driver's polling of the job, HGETALL and HLEN): counts, not times.
            "redis_commands_last_round": commands,
        }
        on = await start("inline")
        big = tmp / "big" / "big.txt"
        big.parent.mkdir()
        write_large_text(big, big_mib)
        on.peaks.clear()
        job = await service.submit(tenant="big", files=local_files([big], big.parent))
        while True:
            on.sample()
            done = await asyncio.to_thread(service.job, job, tenant="big")
            if done is not None and done.status == "completed":
                break
            await asyncio.sleep(0.1)
        on.sample()
        memory = {
            "file_mib": big_mib,
            "peak_rss_mib": max(on.peaks.values()) / 1024,
            "seconds": done.finished_at - done.created_at,
            "mib_per_s": big_mib / (done.finished_at - done.created_at),
            "status": f"{done.done} done, {done.failed} failed",
        }
    finally:
        if worker is not None:
            worker.stop()
        app.close()
        await service.aclose()
        await close()
    return overhead, memory


RATIOS = (
    (
        "ratio_vs_noop_tasks",
        "pipeline chunks/s / no-op tasks/s (one task per chunk)",
        "no-op\ntasks",
    ),
    (
        "ratio_vs_celery_plus_work",
        "(Celery, same messages + chunking + store) / pipeline",
        "Celery+\nchunk+store",
    ),
    (
        "ratio",
        "pipeline chunks/s / chunks/s of Celery carrying the same messages",
        "Celery,\nsame msgs",
    ),
)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4.5), width_ratios=[3, 1])
    e, o = results["embedding"], results["overhead"]
    names, ratios, targets = ["pipeline /\nraw embedder"], [e["ratio"]], [e["target"]]
    for lane_path, figures in (("inline", o), ("split", o["split"])):
        for key, _, label in RATIOS:
            names.append(f"no-op {lane_path}\n/ {label}")
            ratios.append(figures[key])
            targets.append(figures["target"])
    colors = ["#4c72b0"] + ["#55a868"] * 3 + ["#8172b2"] * 3
    ax1.bar(names, ratios, color=colors)
    for x, (r, t) in enumerate(zip(ratios, targets, strict=True)):
        ax1.hlines(t, x - 0.4, x + 0.4, colors="red", linestyles="dashed")
        ax1.text(x, r, f"{r:.2f}", ha="center", va="bottom")
    ax1.tick_params(axis="x", labelsize=7)
    ax1.set_title(
        "ingest ratios (dashed: target; no-op: inline = default worker, split = embed sent)"
    )
    m = results["memory"]
    ax2.bar(
        ["file size", "worker peak RSS"],
        [m["file_mib"], m["peak_rss_mib"]],
        color=["#999", "#c44e52"],
    )
    ax2.set_ylabel("MiB")
    ax2.set_title(f"{m['file_mib']} MiB text file, one worker child")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(o: dict[str, Any], path: str) -> None:
    """Print one path's three ratios, with their definitions, and its breakdown."""

    def rounds(key: str) -> str:
        return ", ".join(f"{r:.2f}" for r in o[f"{key}_per_round"])

    print(
        f"no-op pipeline, {path} ({o['messages']} messages): {o['pipeline_s']:.2f} s,"
        f" {o['pipeline_chunks_per_s']:.0f} chunks/s (target >= 0.9 for each ratio):"
    )
    for key, definition, _ in RATIOS:
        print(f"  {o[key]:.2f} = {definition} (per round: {rounds(key)})")
    b = o["breakdown_s"]
    print(
        f"  pipeline {o['pipeline_s']:.2f} s = Celery transport {b['celery_transport']:.2f} s"
        f" + chunking {b['chunking']:.2f} s + store writes {b['store_writes']:.2f} s"
        f" + bookkeeping and the rest {b['bookkeeping_and_rest']:.2f} s (medians)"
    )
    cpu = o["worker_cpu_s"]
    print(
        f"  worker CPU per run (medians): pipeline {cpu['pipeline']:.2f} s,"
        f" Celery same messages {cpu['celery_same_messages']:.2f} s"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest")
    parser.add_argument("--docs", type=int, default=12)
    parser.add_argument("--noop-docs", type=int, default=200)
    parser.add_argument("--big-mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="pool processes of the no-op comparisons' worker (both sides)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tmp = Path(tempfile.mkdtemp(prefix="lanewise-bench-ingest-"))
    load_before = os.getloadavg()
    with bench_servers(tmp) as (redis_url, pg_url):
        embedding = asyncio.run(embedding_efficiency(tmp, redis_url, pg_url, args.docs))
        overhead, memory = asyncio.run(
            overhead_and_memory(
                tmp,
                redis_url,
                pg_url,
                args.noop_docs,
                args.big_mib,
                args.rounds,
                args.concurrency,
            )
        )
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs)",
        "load_average_before_after": [load_before, os.getloadavg()],
        "embedding": embedding,
        "overhead": overhead,
        "memory": memory,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS / "ingest.png")
    e, o = embedding, overhead
    print(
        f"pipeline vs raw embedder:    {e['ratio']:.2f} (target >= 0.85): "
        f"{e['pipeline_chunks_per_s']:.1f} vs {e['raw_embedder_chunks_per_s']:.1f} chunks/s, "
        f"{e['pipeline_docs_per_s']:.2f} docs/s"
    )
    n = o["noop_tasks"]
    print(
        f"no-op tasks alone: {n['tasks']} tasks in {n['seconds']:.2f} s,"
        f" {n['tasks_per_s']:.0f} tasks/s (median; runs "
        + ", ".join(f"{r:.2f}" for r in n["runs_s"])
        + " s)"
    )
    report(o, "inline (default)")
    report(o["split"], "split (every batch to the embed queue)")
    print(
        f"peak worker RSS on {memory['file_mib']} MiB: {memory['peak_rss_mib']:.0f} MiB "
        f"({memory['mib_per_s']:.1f} MiB/s)"
    )
    return 0
