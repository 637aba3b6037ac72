"""kill -9 a writer mid-upsert, reopen the embedded store, verify no acknowledged write is lost.

The writer prints ``ACK <op> <batch>`` only after ``upsert``/``delete`` has
returned; the parent SIGKILLs it at a random moment (usually inside the next
write, sometimes inside a snapshot), reopens the store in this process and
checks: SQLite integrity, every acknowledged batch present exactly (ids, texts,
metadata, vectors found by their own query, texts found by BM25), every acknowledged delete
absent, each batch all-or-nothing (the one in flight may have committed before
its ACK was printed), count equal to what search finds, the lexical index
holding exactly the rows the vector index holds, and the store still writable.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from lanewise.retrieval.stores import EmbeddedStore, IndexParams

DIM = 16
BATCH = 64

WRITER = textwrap.dedent(
    """
    import asyncio, random, sys
    from lanewise.retrieval.stores import EmbeddedStore, IndexParams

    DIM, BATCH = {dim}, {batch}

    def batch_rows(b):
        rng = random.Random(b)
        ids = [f"b{{b}}-{{i}}" for i in range(BATCH)]
        vecs = [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(BATCH)]
        return ids, vecs

    async def main(path):
        store = EmbeddedStore(path, IndexParams(dimension=DIM))
        b = 0
        while True:
            ids, vecs = batch_rows(b)
            await store.upsert(
                tenant="crash", ids=ids, vectors=vecs,
                texts=[f"text {{i}}" for i in ids], metadata=[{{"batch": b}} for _ in ids],
            )
            print(f"ACK upsert {{b}}", flush=True)
            if b % 5 == 4:
                await store.delete(tenant="crash", filter={{"field": "batch", "eq": b - 2}})
                print(f"ACK delete {{b - 2}}", flush=True)
            if b % 7 == 6:
                await store.snapshot()
                print("ACK snapshot", flush=True)
            b += 1

    asyncio.run(main(sys.argv[1]))
    """
).format(dim=DIM, batch=BATCH)


def _batch_rows(b: int) -> tuple[list[str], list[list[float]]]:
    rng = random.Random(b)
    ids = [f"b{b}-{i}" for i in range(BATCH)]
    vecs = [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(BATCH)]
    return ids, vecs


def _run_and_kill(path: Path, acks_before_kill: int, delay_s: float) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    errors = path.with_suffix(".stderr")
    with open(errors, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    assert proc.stdout is not None
    acks: list[str] = []
    try:
        while len(acks) < acks_before_kill:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer died early: {errors.read_text()[-2000:]}")
            acks.append(line.strip())
        # The writer is already executing its next write; land the kill somewhere inside it.
        time.sleep(delay_s)
        proc.send_signal(signal.SIGKILL)
        # Read through the same buffered reader: lines flushed before the kill are ACKs too.
        acks += [line.strip() for line in proc.stdout.read().splitlines()]
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return [a for a in acks if a.startswith("ACK")]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
async def test_kill_9_mid_upsert_loses_no_acknowledged_write(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "v.sqlite3"
    acks = _run_and_kill(path, acks_before_kill=rng.randint(3, 25), delay_s=rng.uniform(0, 0.05))
    upserted = {int(a.split()[2]) for a in acks if a.startswith("ACK upsert")}
    deleted = {int(a.split()[2]) for a in acks if a.startswith("ACK delete")}
    # A delete may have been in flight (committed, not yet acknowledged) when killed.
    newest = max(upserted)
    in_flight_delete = newest - 2 if newest % 5 == 4 and newest - 2 not in deleted else None

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()

    store = EmbeddedStore(path, IndexParams(dimension=DIM))
    try:
        total = 0
        last = max(upserted) + 1  # the batch that may have been in flight
        for b in range(last + 1):
            present = await store.count(tenant="crash", filter={"field": "batch", "eq": b})
            assert present in (0, BATCH), f"batch {b} half written: {present} rows"
            total += present
            if b in deleted:
                assert present == 0, f"acknowledged delete of batch {b} lost"
            elif b in upserted and present == 0 and b == in_flight_delete:
                pass
            elif b in upserted:
                assert present == BATCH, f"acknowledged batch {b} lost"
                ids, vecs = _batch_rows(b)
                for j in (0, BATCH - 1):
                    hits = await store.search(tenant="crash", vector=vecs[j], k=1)
                    assert hits[0].id == ids[j]
                    assert hits[0].text == f"text {ids[j]}"
                    assert hits[0].metadata == {"batch": b}
                    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
            # The lexical index holds exactly the rows the vector index holds.
            lexical = await store.search_lexical(tenant="crash", query=f"b{b}", k=10_000)
            assert {h.id.split("-")[0] for h in lexical} <= {f"b{b}"}
            assert len(lexical) == present, f"batch {b}: {len(lexical)} lexical, {present} rows"
        assert await store.count(tenant="crash") == total
        everything = await store.search(tenant="crash", vector=[1.0] * DIM, k=10_000)
        assert len(everything) == total
        lexical_all = await store.search_lexical(tenant="crash", query="text", k=10_000)
        assert {h.id for h in lexical_all} == {h.id for h in everything}
        # Still writable after recovery.
        await store.upsert(
            tenant="crash", ids=["after"], vectors=[[1.0] * DIM], texts=["x"], metadata=[{}]
        )
        assert await store.count(tenant="crash") == total + 1
    finally:
        await store.aclose()
