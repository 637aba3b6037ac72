"""The pgvector store against a real PostgreSQL 16 + pgvector (the ``pgserver`` wheel).

The store connects as an ordinary role (no superuser, no BYPASSRLS), so the
row-level-security policy is really in force while the shared contract runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from lanewise.core.errors import ConfigError, InvalidRequest, Unavailable
from lanewise.retrieval.contract import (
    VectorStoreContract,
    lexical_reference,
    new_tenant,
    put,
    random_rows,
    random_texts,
)
from lanewise.retrieval.filters import parse_filter
from lanewise.retrieval.lexical import ANALYZER
from lanewise.retrieval.stores.pgvector import PgvectorStore
from lanewise.retrieval.stores.pgvector_sql import filter_sql
from lanewise.retrieval.strategies import filters

APP_ROLE = "lanewise_app"


@pytest.fixture(scope="session")
def pg_superuser_url() -> Iterator[str]:
    # Not under pytest's basetemp: as root, pgserver runs postgres as a 'pgserver' user
    # that must traverse the path, and every pytest session that starts meanwhile
    # resets /tmp/pytest-of-root to 0700 (which made postgres fail mid-session).
    pgdata = Path(tempfile.mkdtemp(prefix="lanewise-pgvector-"))
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, root shells).
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        # pgserver also cleans up at interpreter exit, logging to a stream pytest has closed.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture(scope="session")
def pgvector_url(pg_superuser_url: str) -> str:
    """A database with pgvector, owned by an ordinary role; the URL logs in as that role."""
    db = f"lw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_superuser_url, autocommit=True) as conn:
        conn.execute(
            f"DO $$ BEGIN CREATE ROLE {APP_ROLE} LOGIN;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        conn.execute(f"CREATE DATABASE {db} OWNER {APP_ROLE}")
    admin_url = pg_superuser_url.replace("/postgres?", f"/{db}?")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    return admin_url.replace("postgres:@", f"{APP_ROLE}:@")


def new_store(url: str, **options) -> PgvectorStore:
    return PgvectorStore(url, table=f"t_{uuid.uuid4().hex[:12]}", **options)


class TestPgvectorContract(VectorStoreContract):
    @pytest.fixture
    async def store(self, pgvector_url):
        store = new_store(pgvector_url, dimension=self.DIM, create_extension=False)
        yield store
        await store.aclose()


class TestPgvectorContractOnHnsw(VectorStoreContract):
    """The same contract with exact search off: HNSW first, exact only as the fallback."""

    @pytest.fixture
    async def store(self, pgvector_url):
        store = new_store(pgvector_url, dimension=self.DIM, create_extension=False, exact_limit=0)
        yield store
        await store.aclose()


async def test_row_level_security_hides_other_tenants(pgvector_url):
    store = new_store(pgvector_url, dimension=4, create_extension=False)
    try:
        await store.upsert(
            tenant="a", ids=["x"], vectors=[[1, 0, 0, 0]], texts=["a's"], metadata=[{}]
        )
        await store.upsert(
            tenant="b", ids=["y"], vectors=[[0, 1, 0, 0]], texts=["b's"], metadata=[{}]
        )
    finally:
        await store.aclose()
    with psycopg.connect(pgvector_url) as conn:
        # Without the tenant setting the policy admits nothing, even to the table owner.
        assert conn.execute(f"SELECT count(*) FROM {store.table}").fetchone() == (0,)
        conn.execute("SELECT set_config('lanewise.tenant', 'a', true)")
        assert conn.execute(f"SELECT id FROM {store.table}").fetchall() == [("x",)]
        # Writing a row for another tenant is refused by the policy's WITH CHECK.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                f"INSERT INTO {store.table} (tenant, id, embedding, text)"
                " VALUES ('b', 'z', '[1,1,1,1]', 'sneaky')"
            )


async def test_hnsw_index_exists(pgvector_url):
    store = new_store(pgvector_url, dimension=4, create_extension=False)
    try:
        await store.count(tenant="a")
    finally:
        await store.aclose()
    with psycopg.connect(pgvector_url) as conn:
        (definition,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", [f"{store.table}_hnsw"]
        ).fetchone()
    assert "hnsw" in definition
    assert "vector_cosine_ops" in definition


async def test_reopening_with_another_dimension_is_a_config_error(pgvector_url):
    first = new_store(pgvector_url, dimension=4, create_extension=False)
    await first.count(tenant="a")
    await first.aclose()
    second = PgvectorStore(pgvector_url, dimension=8, table=first.table, create_extension=False)
    try:
        with pytest.raises(ConfigError, match="4-d"):
            await second.count(tenant="a")
    finally:
        await second.aclose()


async def test_unreachable_server_is_503_with_retry_after(tmp_path):
    url = f"postgresql://nobody@/nothing?host={tmp_path}"  # no server on that socket
    store = PgvectorStore(url, dimension=4, connect_timeout_s=1)
    try:
        with pytest.raises(Unavailable) as caught:
            await store.search(tenant="a", vector=[1, 0, 0, 0], k=1)
        assert caught.value.retry_after_s == 5.0
    finally:
        await store.aclose()


def test_bad_table_name_is_a_config_error():
    with pytest.raises(ConfigError, match="table"):
        PgvectorStore("postgresql://x@/y", dimension=4, table="x; DROP TABLE y")


@settings(max_examples=50)
@given(filters(max_leaves=6))
def test_filter_sql_binds_every_value(node):
    sql, params = filter_sql(node)
    assert sql.count("%s") == len(params)
    # Nothing a caller sends is spliced into the SQL text.
    for leaf_value in params:
        if isinstance(leaf_value, str) and leaf_value not in ("TRUE",):
            assert f"'{leaf_value}'" not in sql


def test_no_filter_is_true():
    assert filter_sql(parse_filter(None)) == ("TRUE", [])


async def test_delete_without_ids_or_filter_is_refused(pgvector_url):
    store = new_store(pgvector_url, dimension=4, create_extension=False)
    try:
        tenant = new_tenant()
        await put(store, tenant, random_rows(__import__("random").Random(0), 3, 4))
        with pytest.raises(InvalidRequest):
            await store.delete(tenant=tenant)
        assert await store.count(tenant=tenant) == 3
    finally:
        await store.aclose()


def lexical_state(admin_url: str, table: str, tenant: str) -> tuple[dict, dict, int, int]:
    """(lexicon df, df recounted from the rows, tenant tokens, sum of row lengths)."""
    with psycopg.connect(admin_url) as conn:
        lexicon = dict(
            conn.execute(
                f"SELECT term, df FROM {table}_lexicon WHERE tenant = %s AND df > 0", [tenant]
            ).fetchall()
        )
        recount = dict(
            conn.execute(
                f"SELECT key, count(*) FROM {table}, jsonb_object_keys(term_freq) AS key"
                " WHERE tenant = %s GROUP BY key",
                [tenant],
            ).fetchall()
        )
        tokens = conn.execute(
            f"SELECT tokens FROM {table}_tenants WHERE tenant = %s", [tenant]
        ).fetchone()[0]
        lengths = conn.execute(
            f"SELECT coalesce(sum(lex_len), 0) FROM {table} WHERE tenant = %s", [tenant]
        ).fetchone()[0]
    return lexicon, recount, int(tokens), int(lengths)


async def test_a_writer_killed_mid_upsert_leaves_rows_and_lexicon_agreeing(
    pgvector_url, pg_superuser_url
):
    """The upsert's backend is terminated while it waits to bump the tenant's totals (after
    its rows and lexicon changes, in the same statement): the whole transaction rolls back."""
    admin_url = pgvector_url.replace(f"{APP_ROLE}:@", "postgres:@")
    store = new_store(pgvector_url, dimension=4, create_extension=False)
    rng = random.Random(5)
    texts = random_texts(rng, 12)
    rows = [
        (f"d{i}", [rng.uniform(-1, 1) for _ in range(4)], t, {"i": i}) for i, t in enumerate(texts)
    ]
    try:
        await put(store, "crash", rows)
        before = lexical_state(admin_url, store.table, "crash")
        with psycopg.connect(admin_url) as blocker:
            # Hold the tenant's totals row: the upsert waits for it.
            blocker.execute(
                f"SELECT 1 FROM {store.table}_tenants WHERE tenant = 'crash' FOR UPDATE"
            )
            replaced = [
                (rid, vec, f"queue shard {text}", meta) for rid, vec, text, meta in rows[:6]
            ]
            writer = asyncio.ensure_future(put(store, "crash", replaced))
            pid = None
            # pg_stat_activity is snapshotted per transaction: poll outside the blocker's.
            watcher = psycopg.connect(admin_url, autocommit=True)
            for _ in range(200):
                found = watcher.execute(
                    # (the statement's text is cut at track_activity_query_size: match
                    # its start, the only statement of this table that can wait here)
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE %s",
                    [f"%{store.table}%"],
                ).fetchone()
                if found:
                    pid = found[0]
                    break
                await asyncio.sleep(0.02)
            assert pid is not None, "the upsert never waited for the totals row"
            watcher.execute("SELECT pg_terminate_backend(%s)", [pid])
            watcher.close()
            with pytest.raises(Unavailable):
                await writer
            blocker.rollback()
        after = lexical_state(admin_url, store.table, "crash")
        assert after == before
        assert after[0] == after[1]  # lexicon df == df recounted from the rows
        assert after[2] == after[3]  # tenant token total == sum of row lengths
        hits = await store.search_lexical(tenant="crash", query="queue shard", k=20)
        reference = lexical_reference(rows, "queue shard", len(rows), None)
        assert [h.id for h in hits] == [rid for rid, _ in reference[:20]]
        # And the store still writes.
        await put(store, "crash", replaced)
        final = lexical_state(admin_url, store.table, "crash")
        assert final[0] == final[1]
        assert final[2] == final[3]
    finally:
        await store.aclose()


async def test_terms_of_an_older_analyzer_are_recomputed_before_the_next_lexical_search(
    pgvector_url,
):
    """Rows analysed by another analyzer (here: their terms wiped and the tenant's analyzer
    renamed, as an upgrade leaves them) are re-analysed from their text by the next BM25
    search, which then ranks exactly like the reference, statistics agreeing with the rows."""
    admin_url = pgvector_url.replace(f"{APP_ROLE}:@", "postgres:@")
    store = new_store(pgvector_url, dimension=4, create_extension=False)
    rng = random.Random(9)
    texts = [
        "compressed archives keep their compression level",
        "the worker retries a timed-out task",
        "compressing a stream chunk by chunk",
        *random_texts(rng, 9),
    ]
    rows = [
        (f"d{i}", [rng.uniform(-1, 1) for _ in range(4)], t, {"i": i}) for i, t in enumerate(texts)
    ]
    try:
        await put(store, "old", rows)
        with psycopg.connect(admin_url) as conn:
            t = store.table
            conn.execute(
                f"UPDATE {t} SET term_freq = '{{}}', lexemes = '', lex_len = 0 WHERE tenant = 'old'"
            )
            conn.execute(f"DELETE FROM {t}_lexicon WHERE tenant = 'old'")
            conn.execute(f"UPDATE {t}_tenants SET analyzer = 'older', tokens = 0")
        for query in ("how is data compressed?", "retrying workers", "queue shard"):
            hits = await store.search_lexical(tenant="old", query=query, k=len(rows))
            reference = lexical_reference(rows, query, len(rows), None)
            assert [h.id for h in hits] == [rid for rid, _ in reference], query
            assert [h.score for h in hits] == pytest.approx([s for _, s in reference])
        lexicon, recount, tokens, lengths = lexical_state(admin_url, store.table, "old")
        assert lexicon == recount
        assert tokens == lengths > 0
        with psycopg.connect(admin_url) as conn:
            (analyzer,) = conn.execute(
                f"SELECT analyzer FROM {store.table}_tenants WHERE tenant = 'old'"
            ).fetchone()
        assert analyzer == ANALYZER
    finally:
        await store.aclose()


START_STORE = """
import asyncio, sys
from lanewise.retrieval.stores.pgvector import PgvectorStore

async def main():
    store = PgvectorStore(sys.argv[1], dimension=4, table=sys.argv[2])
    try:
        print(await store.count(tenant="busy"))
    finally:
        await store.aclose()

asyncio.run(main())
"""


def start_stores(url: str, table: str, n: int) -> list[tuple[int, str, str]]:
    """Start a store in ``n`` processes at once: (exit status, stdout, stderr) of each."""
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", START_STORE, url, table],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    try:
        outs = [p.communicate(timeout=60) for p in starts]
        return [(p.returncode, out, err) for p, (out, err) in zip(starts, outs, strict=True)]
    finally:
        for p in starts:
            p.kill()


async def test_processes_start_while_another_holds_an_upsert_open(pgvector_url):
    """Two processes start a store on an existing table while a third is inside an upsert's
    transaction: they read the catalogs, find the schema complete and take no table lock
    (ALTER TABLE ... ROW LEVEL SECURITY would wait for the writer, and deadlock with it
    when the writer then needs a table the starting process holds)."""
    store = new_store(pgvector_url, dimension=4, create_extension=False)
    rows = [(f"d{i}", [1.0, float(i), 0.0, 0.5], f"text {i}", {"i": i}) for i in range(3)]
    try:
        await put(store, "busy", rows)
        t = store.table
        with psycopg.connect(pgvector_url) as writer:
            # An upsert in flight: row-exclusive locks on the rows, lexicon and totals tables.
            writer.execute("SELECT set_config('lanewise.tenant', 'busy', true)")
            writer.execute(
                f"INSERT INTO {t} (tenant, id, embedding, text) VALUES ('busy', 'x', %s, 'x')",
                ["[1,0,0,0]"],
            )
            writer.execute(f"INSERT INTO {t}_lexicon VALUES ('busy', 'x', 1)")
            writer.execute(f"UPDATE {t}_tenants SET version = version + 1 WHERE tenant = 'busy'")
            started = await asyncio.to_thread(start_stores, pgvector_url, t, 2)
            assert [rc for rc, _, _ in started] == [0, 0], started
            assert [out.strip() for _, out, _ in started] == ["3", "3"]  # the open insert unseen
            writer.commit()
        assert await store.count(tenant="busy") == 4
    finally:
        await store.aclose()
