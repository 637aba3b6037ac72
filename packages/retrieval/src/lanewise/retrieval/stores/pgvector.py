"""``pgvector``: PostgreSQL + pgvector through psycopg 3 (async pool).

One table per store: ``(tenant, id)`` primary key, ``embedding vector(d)``
with an HNSW index (cosine), ``text``, ``metadata jsonb``; a companion
``<table>_tenants`` table holds each tenant's index version and row count,
updated in the same transaction as every write, so a reader never sees rows
and a version that disagree.

Tenant isolation is enforced twice: every statement says ``tenant = %s``, and
both tables carry a row-level-security policy (``FORCE``d, so it binds the
table owner too) that admits only rows of the tenant set for the current
transaction (``SET LOCAL lanewise.tenant``). RLS does not bind superusers or
roles with BYPASSRLS: connect as an ordinary role (the tests do).

Search is exact (a sequential scan of the tenant's rows) while a tenant holds
at most ``exact_limit`` rows, else HNSW with ``hnsw.ef_search`` raised for
``k``; when HNSW post-filtering (tenant, metadata filter) leaves fewer than
``k`` hits the query is re-run exactly, so a selective filter costs time, never
recall. pgvector >= 0.8 also gets ``hnsw.iterative_scan``.

Lexical search is BM25 exactly as :mod:`lanewise.retrieval.lexical` defines it
(the same tokenizer, computed in Python, so every store ranks alike): each row
keeps its terms as a ``tsvector`` (``array_to_tsvector``, GIN-indexed, which
finds the rows holding any query term), their counts in ``term_freq`` (jsonb)
and its length; ``<table>_lexicon`` holds each tenant's document frequencies
and ``<table>_tenants`` its total length, all changed in the same transaction
as the rows, so the statistics are the tenant's own and always agree with them.
``<table>_tenants`` also names the analyzer (``lexical.ANALYZER``) the terms
came from: when it is not today's, the tenant's next lexical search
re-analyses all its rows from their text first, in its own transaction.
"""

# The only text spliced into SQL is the table name (checked against TABLE_NAME at
# construction) and filter fragments made of fixed SQL and %s placeholders.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
from lanewise.core.errors import ConfigError, InvalidRequest, Unavailable
from lanewise.core.factory import FactoryContext
from lanewise.core.protocols import Filter
from lanewise.core.types import Hit
from lanewise.retrieval.filters import parse_filter
from lanewise.retrieval.lexical import ANALYZER, K1, B, idf, query_terms, tokenize
from lanewise.retrieval.stores.batch import check_k, check_tenant, unit_vectors, validate_batch
from lanewise.retrieval.stores.pgvector_sql import filter_sql

TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
MAX_EF_SEARCH = 1000


def vector_literal(row: npt.NDArray[np.float32]) -> str:
    return "[" + ",".join(map(repr, row.tolist())) + "]"


class PgvectorStore:
    def __init__(
        self,
        url: str,
        *,
        dimension: int,
        table: str = "lanewise_vectors",
        m: int = 16,
        ef_construction: int = 64,
        ef_search: int = 40,
        exact_limit: int = 10_000,
        pool_min: int = 1,
        pool_max: int = 8,
        connect_timeout_s: float = 5.0,
        create_extension: bool = True,
        retry_after_s: float = 5.0,
    ) -> None:
        if not TABLE_NAME.match(table):
            raise ConfigError(
                f"retrieval.vector_store.table = {table!r} must match {TABLE_NAME.pattern}"
            )
        from psycopg_pool import AsyncConnectionPool

        self.dimension = dimension
        self.table = table
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exact_limit = exact_limit
        self.create_extension = create_extension
        self.retry_after_s = retry_after_s
        self._pool = AsyncConnectionPool(
            url,
            min_size=pool_min,
            max_size=pool_max,
            timeout=connect_timeout_s,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout_s))},
        )
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._iterative_scan = False

    # -- plumbing -------------------------------------------------------------------
    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            await self._pool.open(wait=False)
            async with self._pool.connection() as conn, conn.transaction():
                await self._create_schema(conn)
            self._ready = True

    async def _create_schema(self, conn: Any) -> None:
        t, d = self.table, self.dimension
        # Two processes starting at once must not race on DDL.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"lanewise:{t}"])
        if self.create_extension:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        row = await (
            await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).fetchone()
        if row is None:
            raise Unavailable(
                "the pgvector extension is not installed in this database; "
                "CREATE EXTENSION vector (as a superuser)",
                retry_after_s=self.retry_after_s,
            )
        major, minor = (int(p) for p in str(row[0]).split(".")[:2])
        self._iterative_scan = (major, minor) >= (0, 8)
        if not await self._schema_complete(conn):
            await self._build_schema(conn)
        existing = await (
            await conn.execute(
                "SELECT atttypmod FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attname = 'embedding'",
                [t],
            )
        ).fetchone()
        if existing is not None and existing[0] != d:
            raise ConfigError(
                f"table {t} holds {existing[0]}-d vectors but the store is configured for {d}; "
                "use another retrieval.vector_store.table"
            )

    async def _schema_complete(self, conn: Any) -> bool:
        """Whether every table, column, index and policy is there already, read from the
        catalogs without locking a table. Every process starts here: ``ALTER TABLE`` and
        ``CREATE INDEX`` (even with ``IF NOT EXISTS``) lock the table against the other
        processes' writes, and a start behind a long upsert would wait for it."""
        t = self.table
        tables = [t, f"{t}_tenants", f"{t}_lexicon"]
        row = await (
            await conn.execute(
                "SELECT (SELECT count(*) FROM pg_class WHERE oid IN"
                "  (to_regclass(%s), to_regclass(%s), to_regclass(%s))"
                "  AND relrowsecurity AND relforcerowsecurity) = 3"
                " AND (SELECT count(*) FROM pg_policies WHERE tablename = ANY(%s)"
                "  AND policyname = 'lanewise_tenant_isolation') = 3"
                " AND (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s)"
                "  AND attname IN ('lexemes', 'term_freq', 'lex_len') AND NOT attisdropped) = 3"
                " AND (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s)"
                "  AND attname IN ('tokens', 'analyzer') AND NOT attisdropped) = 2"
                " AND to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
                [*tables, tables, t, f"{t}_tenants", f"{t}_hnsw", f"{t}_lexemes"],
            )
        ).fetchone()
        return bool(row and row[0])

    async def _build_schema(self, conn: Any) -> None:
        t, d = self.table, self.dimension
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t} ("
            " tenant text NOT NULL, id text NOT NULL,"
            f" embedding vector({d}) NOT NULL, text text NOT NULL,"
            " metadata jsonb NOT NULL DEFAULT '{}'::jsonb,"
            " PRIMARY KEY (tenant, id))"
        )
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t}_tenants ("
            " tenant text PRIMARY KEY, version bigint NOT NULL, rows bigint NOT NULL)"
        )
        await conn.execute(
            f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding vector_cosine_ops)"
            f" WITH (m = {int(self.m)}, ef_construction = {int(self.ef_construction)})"
        )
        await conn.execute(
            f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS lexemes tsvector NOT NULL"
            " DEFAULT ''::tsvector,"
            " ADD COLUMN IF NOT EXISTS term_freq jsonb NOT NULL DEFAULT '{}'::jsonb,"
            " ADD COLUMN IF NOT EXISTS lex_len integer NOT NULL DEFAULT 0"
        )
        await conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_lexemes ON {t} USING gin (lexemes)")
        await conn.execute(
            f"ALTER TABLE {t}_tenants ADD COLUMN IF NOT EXISTS tokens bigint NOT NULL DEFAULT 0,"
            " ADD COLUMN IF NOT EXISTS analyzer text NOT NULL DEFAULT ''"
        )
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t}_lexicon ("
            " tenant text NOT NULL, term text NOT NULL, df bigint NOT NULL,"
            " PRIMARY KEY (tenant, term))"
        )
        for name in (t, f"{t}_tenants", f"{t}_lexicon"):
            secured = await (
                await conn.execute(
                    "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class"
                    " WHERE oid = %s::regclass",
                    [name],
                )
            ).fetchone()
            if not (secured and secured[0]):  # ALTER TABLE locks out every writer
                await conn.execute(
                    f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY"
                )
            present = await (
                await conn.execute(
                    "SELECT 1 FROM pg_policies WHERE tablename = %s AND policyname = %s",
                    [name, "lanewise_tenant_isolation"],
                )
            ).fetchone()
            if present is None:
                await conn.execute(
                    f"CREATE POLICY lanewise_tenant_isolation ON {name}"
                    " USING (tenant = current_setting('lanewise.tenant', true))"
                    " WITH CHECK (tenant = current_setting('lanewise.tenant', true))"
                )

    @asynccontextmanager
    async def _tenant_tx(self, tenant: str) -> AsyncIterator[Any]:
        """A transaction that RLS scopes to ``tenant``; outages become 503s."""
        import psycopg
        from psycopg_pool import PoolTimeout

        check_tenant(tenant)
        try:
            await self._ensure_ready()
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT set_config('lanewise.tenant', %s, true)", [tenant])
                yield conn
        except (psycopg.OperationalError, PoolTimeout, OSError) as exc:
            raise Unavailable(
                f"PostgreSQL is unavailable ({type(exc).__name__}); retry shortly",
                retry_after_s=self.retry_after_s,
            ) from None

    # -- the contract ---------------------------------------------------------------
    async def upsert(
        self,
        *,
        tenant: str,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]],
    ) -> int:
        args = self.upsert_params(tenant, ids, vectors, texts, metadata)
        if args is None:
            return 0
        async with self._tenant_tx(tenant) as conn:
            row = await (await conn.execute(self.upsert_sql, args)).fetchone()
            if row is not None and row[0]:  # a replaced row took a term's last occurrence
                await conn.execute(
                    f"DELETE FROM {self.table}_lexicon WHERE tenant = %s AND df <= 0", [tenant]
                )
        return len(args[0])

    def upsert_params(
        self,
        tenant: str,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]],
    ) -> list[Any] | None:
        """The upsert statement's parameters for a batch (None: an empty batch); apart so
        that ``bench/ingest/store_profile.py`` can time the very statement piece by piece."""
        check_tenant(tenant)
        batch = validate_batch(self.dimension, ids, vectors, texts, metadata)
        if batch is None:
            return None
        counts = [Counter(tokenize(text)) for text in batch.texts]
        return [
            batch.ids,
            [vector_literal(v) for v in batch.vectors],
            batch.texts,
            batch.metadata_json,
            [json.dumps(c) for c in counts],
            [sum(c.values()) for c in counts],
            tenant,
            tenant,
            tenant,
            tenant,
            ANALYZER,
        ]

    @property
    def upsert_sql(self) -> str:
        """One statement for a whole batch: the rows, the document frequencies of their terms
        (new rows' terms +1, replaced rows' old terms -1) and the tenant's counts; its result
        says whether some frequency went down (then zeroed terms need deleting).

        Every sub-statement sees the snapshot from before the statement, so ``old`` holds
        the replaced rows as they were. The arrays travel in binary (``%b``): no per-element
        escaping, which cost more client time than the server spent on the rows; the
        lexicon rows are written in term order, so that concurrent writers of one tenant
        lock them in the same order (no deadlock)."""
        t = self.table
        return (
            "WITH u AS (SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[],"
            " %b::text[], %b::int[]) AS u(id, embedding, text, metadata, term_freq, lex_len)),"
            f" old AS (SELECT o.term_freq, o.lex_len FROM {t} o"
            " WHERE o.tenant = %s AND o.id IN (SELECT id FROM u)),"
            f" ins AS (INSERT INTO {t} (tenant, id, embedding, text, metadata, lexemes,"
            " term_freq, lex_len)"
            " SELECT %s, u.id, u.embedding::vector, u.text, u.metadata::jsonb,"
            " array_to_tsvector(ARRAY(SELECT jsonb_object_keys(u.term_freq::jsonb))),"
            " u.term_freq::jsonb, u.lex_len FROM u"
            " ON CONFLICT (tenant, id) DO UPDATE SET embedding = EXCLUDED.embedding,"
            " text = EXCLUDED.text, metadata = EXCLUDED.metadata,"
            " lexemes = EXCLUDED.lexemes, term_freq = EXCLUDED.term_freq,"
            " lex_len = EXCLUDED.lex_len"
            " RETURNING (xmax = 0) AS new),"
            " delta AS (SELECT term, sum(n)::bigint AS n FROM ("
            " SELECT jsonb_object_keys(u.term_freq::jsonb) AS term, 1 AS n FROM u"
            " UNION ALL SELECT jsonb_object_keys(old.term_freq), -1 FROM old) AS d"
            " GROUP BY term HAVING sum(n) <> 0),"
            f" lex AS (INSERT INTO {t}_lexicon AS l (tenant, term, df)"
            " SELECT %s, term, n FROM delta ORDER BY term"
            " ON CONFLICT (tenant, term) DO UPDATE SET df = l.df + EXCLUDED.df),"
            f" bump AS (INSERT INTO {t}_tenants AS v (tenant, version, rows, tokens, analyzer)"
            " SELECT %s, 1, (SELECT count(*) FROM ins WHERE new),"
            " (SELECT sum(lex_len) FROM u) - (SELECT COALESCE(sum(lex_len), 0) FROM old), %s"
            " ON CONFLICT (tenant) DO UPDATE SET version = v.version + 1,"
            " rows = v.rows + EXCLUDED.rows, tokens = v.tokens + EXCLUDED.tokens)"
            " SELECT EXISTS (SELECT 1 FROM delta WHERE n < 0)"
        )

    async def _count_terms(self, conn: Any, tenant: str, df: Counter[str]) -> None:
        """Apply document-frequency changes; terms in a fixed order, so that concurrent
        writers of one tenant lock the same rows in the same order (no deadlock)."""
        changes = sorted((term, n) for term, n in df.items() if n)
        if not changes:
            return
        t = self.table
        await conn.execute(
            f"INSERT INTO {t}_lexicon AS l (tenant, term, df)"
            " SELECT %s, u.term, u.df FROM unnest(%s::text[], %s::bigint[]) AS u(term, df)"
            " ON CONFLICT (tenant, term) DO UPDATE SET df = l.df + EXCLUDED.df",
            [tenant, [term for term, _ in changes], [n for _, n in changes]],
        )
        if any(n < 0 for _, n in changes):
            await conn.execute(f"DELETE FROM {t}_lexicon WHERE tenant = %s AND df <= 0", [tenant])

    async def _bump(self, conn: Any, tenant: str, row_delta: int, token_delta: int) -> None:
        t = self.table
        await conn.execute(
            f"INSERT INTO {t}_tenants AS v (tenant, version, rows, tokens, analyzer)"
            " VALUES (%s, 1, %s, %s, %s)"
            " ON CONFLICT (tenant) DO UPDATE"
            " SET version = v.version + 1, rows = v.rows + EXCLUDED.rows,"
            " tokens = v.tokens + EXCLUDED.tokens",
            [tenant, row_delta, token_delta, ANALYZER],
        )

    async def _reanalyse(self, conn: Any, tenant: str) -> None:
        """Recompute the tenant's terms, lexicon and total length from its rows' text
        (they came from another analyzer); the row lock makes concurrent callers wait."""
        t = self.table
        row = await (
            await conn.execute(
                f"SELECT analyzer FROM {t}_tenants WHERE tenant = %s FOR UPDATE", [tenant]
            )
        ).fetchone()
        if row is None or row[0] == ANALYZER:
            return
        rows = await (
            await conn.execute(f"SELECT id, text FROM {t} WHERE tenant = %s", [tenant])
        ).fetchall()
        counts = [Counter(tokenize(text)) for _, text in rows]
        await conn.execute(
            f"UPDATE {t} SET term_freq = u.term_freq, lex_len = u.lex_len,"
            " lexemes = array_to_tsvector(ARRAY(SELECT jsonb_object_keys(u.term_freq)))"
            " FROM unnest(%s::text[], %s::jsonb[], %s::int[]) AS u(id, term_freq, lex_len)"
            f" WHERE {t}.tenant = %s AND {t}.id = u.id",
            [
                [rid for rid, _ in rows],
                [json.dumps(c) for c in counts],
                [sum(c.values()) for c in counts],
                tenant,
            ],
        )
        await conn.execute(f"DELETE FROM {t}_lexicon WHERE tenant = %s", [tenant])
        df: Counter[str] = Counter()
        for c in counts:
            df.update(c.keys())
        await self._count_terms(conn, tenant, df)
        await conn.execute(
            f"UPDATE {t}_tenants SET tokens = %s, analyzer = %s WHERE tenant = %s",
            [sum(sum(c.values()) for c in counts), ANALYZER, tenant],
        )

    async def delete(
        self, *, tenant: str, ids: Sequence[str] | None = None, filter: Filter | None = None
    ) -> int:
        check_tenant(tenant)
        node = parse_filter(filter)
        if ids is None and node is None:
            raise InvalidRequest(
                "delete needs ids, a filter, or both (refusing to delete everything)"
            )
        if ids is not None and not ids:
            return 0
        where, params = filter_sql(node)
        sql = f"DELETE FROM {self.table} WHERE tenant = %s AND {where}"
        args: list[Any] = [tenant, *params]
        if ids is not None:
            sql += " AND id = ANY(%s::text[])"
            args.append(list(ids))
        async with self._tenant_tx(tenant) as conn:
            gone = await (
                await conn.execute(sql + " RETURNING term_freq, lex_len", args)
            ).fetchall()
            if gone:
                df: Counter[str] = Counter()
                for freq, _ in gone:
                    df.subtract(freq.keys())
                await self._count_terms(conn, tenant, df)
                await self._bump(conn, tenant, -len(gone), -sum(length for _, length in gone))
        return len(gone)

    async def search(
        self, *, tenant: str, vector: Sequence[float], k: int, filter: Filter | None = None
    ) -> list[Hit]:
        check_tenant(tenant)
        check_k(k)
        query = vector_literal(unit_vectors(self.dimension, [vector], what="query vector")[0])
        node = parse_filter(filter)
        where, params = filter_sql(node)
        t = self.table
        select = (
            f"SELECT id, text, metadata, 1 - (embedding <=> %s::vector) AS score FROM {t}"
            f" WHERE tenant = %s AND {where}"
        )
        async with self._tenant_tx(tenant) as conn:
            row = await (
                await conn.execute(f"SELECT rows FROM {t}_tenants WHERE tenant = %s", [tenant])
            ).fetchone()
            rows = int(row[0]) if row else 0
            if rows == 0:
                return []
            args = [query, tenant, *params, query, k]
            if rows > self.exact_limit:
                ef = min(MAX_EF_SEARCH, max(self.ef_search, 2 * k))
                await conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef)])
                if self._iterative_scan:
                    await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                found = await (
                    await conn.execute(select + " ORDER BY embedding <=> %s::vector LIMIT %s", args)
                ).fetchall()
                if len(found) >= min(k, rows):
                    return self._hits(found)
            # "+ 0" hides the ordering from the HNSW index: an exact scan of the tenant.
            found = await (
                await conn.execute(
                    select + " ORDER BY (embedding <=> %s::vector) + 0, id LIMIT %s", args
                )
            ).fetchall()
        return self._hits(found)

    async def search_lexical(
        self, *, tenant: str, query: str, k: int, filter: Filter | None = None
    ) -> list[Hit]:
        """BM25 over the tenant's texts (:mod:`lanewise.retrieval.lexical`), best first."""
        check_tenant(tenant)
        check_k(k)
        where, params = filter_sql(parse_filter(filter))
        terms = query_terms(query)
        if not terms:
            return []
        t = self.table
        async with self._tenant_tx(tenant) as conn:
            stats = await (
                await conn.execute(
                    f"SELECT rows, tokens, analyzer FROM {t}_tenants WHERE tenant = %s", [tenant]
                )
            ).fetchone()
            if stats is None or stats[0] <= 0:
                return []
            if stats[2] != ANALYZER:
                await self._reanalyse(conn, tenant)
                return await self._search_lexical(conn, tenant, terms, k, where, params)
            return await self._search_lexical(conn, tenant, terms, k, where, params, stats)

    async def _search_lexical(
        self,
        conn: Any,
        tenant: str,
        terms: list[str],
        k: int,
        where: str,
        params: list[Any],
        stats: Sequence[Any] | None = None,
    ) -> list[Hit]:
        t = self.table
        if stats is None:
            stats = await (
                await conn.execute(
                    f"SELECT rows, tokens FROM {t}_tenants WHERE tenant = %s", [tenant]
                )
            ).fetchone()
        n_docs, tokens = int(stats[0]), int(stats[1])
        dfs = dict(
            await (
                await conn.execute(
                    f"SELECT term, df FROM {t}_lexicon"
                    " WHERE tenant = %s AND term = ANY(%s) AND df > 0",
                    [tenant, terms],
                )
            ).fetchall()
        )
        present = [term for term in terms if term in dfs]
        if not present:
            return []
        avg = tokens / n_docs
        norm = f"{K1!r} * (1 - {B!r} + {B!r} * lex_len / %s::float8)" if avg > 0 else repr(K1)
        parts, score_args = [], []
        for term in present:
            tf = "COALESCE((term_freq ->> %s)::float8, 0)"
            parts.append(f"%s::float8 * {tf} * {K1 + 1!r} / ({tf} + {norm})")
            score_args += [idf(n_docs, int(dfs[term])), term, term]
            if avg > 0:
                score_args.append(avg)
        tsquery = " | ".join("'" + term.replace("'", "''") + "'" for term in present)
        found = await (
            await conn.execute(
                f"SELECT id, text, metadata, {' + '.join(parts)} AS score FROM {t}"
                f" WHERE tenant = %s AND lexemes @@ %s::tsquery AND {where}"
                " ORDER BY score DESC, id LIMIT %s",
                [*score_args, tenant, tsquery, *params, k],
            )
        ).fetchall()
        return self._hits(found)

    @staticmethod
    def _hits(rows: Sequence[Any]) -> list[Hit]:
        hits = [
            Hit(
                id=rid,
                text=text,
                metadata=dict(meta),
                score=float(score),
                source=meta["source"] if isinstance(meta.get("source"), str) else "",
            )
            for rid, text, meta, score in rows
        ]
        hits.sort(key=lambda h: -h.score)  # relaxed-order iterative scans may swap neighbours
        return hits

    async def count(self, *, tenant: str, filter: Filter | None = None) -> int:
        check_tenant(tenant)
        where, params = filter_sql(parse_filter(filter))
        async with self._tenant_tx(tenant) as conn:
            row = await (
                await conn.execute(
                    f"SELECT count(*) FROM {self.table} WHERE tenant = %s AND {where}",
                    [tenant, *params],
                )
            ).fetchone()
        return int(row[0])

    async def index_version(self, *, tenant: str) -> int:
        async with self._tenant_tx(tenant) as conn:
            row = await (
                await conn.execute(
                    f"SELECT version FROM {self.table}_tenants WHERE tenant = %s", [tenant]
                )
            ).fetchone()
        return int(row[0]) if row else 0

    async def aclose(self) -> None:
        await self._pool.close()


def build_pgvector(ctx: FactoryContext) -> PgvectorStore:
    """``kind = "pgvector"``; ``url`` defaults to ``database_url`` when that is PostgreSQL."""
    from lanewise.retrieval.stores import store_dimension

    key = ctx.key
    opts = ctx.read(
        {
            "url",
            "table",
            "dimension",
            "m",
            "ef_construction",
            "ef_search",
            "exact_limit",
            "pool_min",
            "pool_max",
            "connect_timeout_s",
            "create_extension",
        },
    )
    url = opts.text("url") or ctx.settings.database_url
    if not url or not str(url).startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"{key}.url must be a postgresql:// URL (or set database_url to one); got {url!r}"
        )
    create_extension = opts.flag("create_extension", True)
    dimension = store_dimension(ctx, opts)
    return PgvectorStore(
        str(url),
        dimension=dimension,
        table=opts.text("table", "lanewise_vectors") or "lanewise_vectors",
        m=opts.integer("m", 16, minimum=2),
        ef_construction=opts.integer("ef_construction", 64, minimum=4),
        ef_search=opts.integer("ef_search", 40),
        exact_limit=opts.integer("exact_limit", 10_000, minimum=0),
        pool_min=opts.integer("pool_min", 1, minimum=0),
        pool_max=opts.integer("pool_max", 8),
        connect_timeout_s=opts.number("connect_timeout_s", 5.0, exclusive=True),
        create_extension=create_extension,
    )
