"""Where the no-op pipeline's store time goes: one pgvector upsert per batch, taken apart.

The bench's own setup: ``pgserver``'s PostgreSQL 16 + pgvector pinned to CPU 0, the
client pinned to CPU 1, the bench corpus (200 files, one batch of about ten chunks each)
cut by the pipeline's own chunking, the no-op embedder's vectors. Per batch, on one
connection, as the store does it: ``BEGIN``, the tenant setting, the one-statement
upsert, ``COMMIT``, each timed from the client; the client's CPU (this process) and the
server's (every PostgreSQL process, from ``/proc``) around the whole loop; the server's
durability settings; a fourth pass with ``synchronous_commit`` off in its session only (the
commit wait, for information: the bench never runs so); ``EXPLAIN (ANALYZE, BUFFERS,
WAL)`` of one more batch; optionally
(``--strace``) the client's system calls (``strace -c``) over a second pass.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m bench.ingest.store_profile [--docs 200]
[--strace]``. Prints its figures; nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from lanewise.core.settings import load_settings
from lanewise.ingest.blobs import Blob
from lanewise.ingest.kv import SqliteKeyValue
from lanewise.ingest.service import runtime_from
from lanewise.ingest.state import IngestState
from lanewise.ingest.testing import children, pgvector_server
from lanewise.ingest.wiring import open_components

from bench.ingest.pipeline_bench import (
    WORKER_CPU,
    pin_servers,
    pinned,
    postmaster_pid,
    write_config,
    write_corpus,
)

SETTINGS = (
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "wal_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "commit_delay",
)


def server_cpu_s(pg_url: str) -> float:
    """CPU seconds (user + system) of the postmaster and every process under it."""
    pid = postmaster_pid(pg_url)
    ticks = 0
    for p in [pid, *children(pid)]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += sum(int(x) for x in fields[11:13])
    return ticks / os.sysconf("SC_CLK_TCK")


def start_strace(out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["strace", "-c", "-f", "-o", str(out), "-p", str(os.getpid())])


def stop_strace(tracer: subprocess.Popen[bytes], out: Path) -> str:
    tracer.send_signal(signal.SIGINT)
    tracer.wait()
    return out.read_text()


async def batches_of(runtime: Any, paths: list[Path]) -> list[list[tuple[str, str, Any]]]:
    out = []
    for path in paths:
        async for batch in runtime.batches(Blob(name=path.name, path=path), "profile"):
            out.append([(cid, text, meta) for cid, text, meta, _ in batch])
    return out


def params(store: Any, tenant: str, batch: list[Any], vectors: list[list[float]]) -> list[Any]:
    """The store's own upsert parameters for ``batch``."""
    ids, texts, metadata = zip(*batch, strict=True)
    args: list[Any] = store.upsert_params(tenant, ids, vectors, texts, metadata)
    return args


async def one_pass(store: Any, conn: Any, embedder: Any, batches: list[Any], tenant: str) -> Any:
    parts: dict[str, list[float]] = {"begin+tenant": [], "upsert": [], "commit": []}
    for batch in batches:
        vectors = await embedder.embed([text for _, text, _ in batch])
        args = params(store, tenant, batch, vectors)
        t0 = time.perf_counter()
        await conn.execute("BEGIN")
        await conn.execute("SELECT set_config('lanewise.tenant', %s, true)", [tenant])
        t1 = time.perf_counter()
        await (await conn.execute(store.upsert_sql, args)).fetchone()
        t2 = time.perf_counter()
        await conn.execute("COMMIT")
        t3 = time.perf_counter()
        parts["begin+tenant"].append(t1 - t0)
        parts["upsert"].append(t2 - t1)
        parts["commit"].append(t3 - t2)
    return parts


async def profile(tmp: Path, pg_url: str, docs: int, strace: bool) -> None:
    config = write_config(
        tmp / "p.toml", redis_url="redis://127.0.0.1:1/0", pg_url=pg_url, embedder="noop",
        data=tmp / "d",
    )  # fmt: skip
    settings = load_settings(config)
    parts, close = open_components(settings)
    kv = SqliteKeyValue(tmp / "state.db")
    try:
        store, embedder = parts.vector_store(), parts.embedder()
        await store.count(tenant="warm")  # creates the schema
        runtime = runtime_from(parts, settings, IngestState(kv))
        runtime.offload = False
        corpus = write_corpus(tmp / "corpus", docs)
        batches = await batches_of(runtime, sorted(corpus.glob("*.md")))
        import psycopg

        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            rows = await (
                await conn.execute(
                    "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)",
                    [list(SETTINGS)],
                )
            ).fetchall()
            print("server settings:", ", ".join(f"{n}={v}{u or ''}" for n, v, u in rows))
            # Three passes as the rig runs (its durability settings), then one with this
            # session's commits not waiting for their WAL flush: what the commit wait costs
            # (for information only; the bench never runs so).
            for rnd in range(4):
                if rnd == 3:
                    await conn.execute("SET synchronous_commit TO off")
                with pinned(WORKER_CPU):
                    c0, s0, w0 = time.process_time(), server_cpu_s(pg_url), time.perf_counter()
                    parts_s = await one_pass(store, conn, embedder, batches, f"t{rnd}")
                    wall = time.perf_counter() - w0
                    client, server = time.process_time() - c0, server_cpu_s(pg_url) - s0
                med = {k: statistics.median(v) * 1000 for k, v in parts_s.items()}
                tot = {k: sum(v) for k, v in parts_s.items()}
                label = "synchronous_commit off" if rnd == 3 else "as the rig runs"
                print(
                    f"pass {rnd} ({label}): {len(batches)} batches,"
                    f" {sum(map(len, batches))} rows in"
                    f" {wall:.2f} s wall; client CPU {client:.2f} s (incl. the no-op vectors"
                    f" and the parameters), server CPU {server:.2f} s; per batch, medians:"
                    + ", ".join(f" {k} {v:.2f} ms" for k, v in med.items())
                    + "; totals:"
                    + ", ".join(f" {k} {v:.2f} s" for k, v in tot.items())
                )
            await conn.execute("SET synchronous_commit TO on")
            batch = batches[0]
            vectors = await embedder.embed([t for _, t, _ in batch])
            await conn.execute("BEGIN")
            await conn.execute("SELECT set_config('lanewise.tenant', %s, true)", ["explain"])
            plan = await (
                await conn.execute(
                    "EXPLAIN (ANALYZE, BUFFERS, WAL, TIMING) " + store.upsert_sql,
                    params(store, "explain", batch, vectors),
                )
            ).fetchall()
            await conn.execute("COMMIT")
            print("EXPLAIN (ANALYZE, BUFFERS, WAL) of one batch's upsert:")
            for (line,) in plan:
                print("   ", line)
            if strace:
                tracer = start_strace(tmp / "strace.txt")
                await asyncio.sleep(1.0)  # attached
                with pinned(WORKER_CPU):
                    await one_pass(store, conn, embedder, batches, "traced")
                print("strace -c of the client over one pass:")
                print(stop_strace(tracer, tmp / "strace.txt"))
    finally:
        kv.close()
        await close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest.store_profile")
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--strace", action="store_true")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lanewise-store-profile-"))
    print(f"load average before: {os.getloadavg()}")
    with pgvector_server() as pg_url:
        pin_servers(pg_url)
        asyncio.run(profile(tmp, pg_url, args.docs, args.strace))
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
