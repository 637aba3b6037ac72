"""Reading back what a store holds, through core's VectorStore contract only."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from lanewise.core.protocols import VectorStore

DIM = 8
TENANT = "acme"
CHUNKER = '[ingest.chunker]\nkind = "tokens"\nsize = 12\noverlap = 3\ntokenizer = "words"\n'


async def stored(store: VectorStore, tenant: str, dimension: int, **eq: Any) -> dict[str, str]:
    """id -> text of every stored chunk of ``tenant`` (optionally where metadata fields equal)."""
    clauses = [{"field": k, "eq": v} for k, v in eq.items()]
    flt = None if not clauses else clauses[0] if len(clauses) == 1 else {"and": clauses}
    n = await store.count(tenant=tenant, filter=flt)
    if n == 0:
        return {}
    hits = await store.search(
        tenant=tenant, vector=[1.0] + [0.0] * (dimension - 1), k=n, filter=flt
    )
    assert len(hits) == n, "the store's search must return every counted chunk"
    return {h.id: h.text for h in hits}


def write_config(path: Path, *, redis_url: str, pg_url: str, data: Path, extra: str = "") -> Path:
    path.write_text(
        f'data_dir = "{data}"\nredis_url = "{redis_url}"\n'
        f'[retrieval.embedder]\nkind = "noop"\ndimension = {DIM}\n'
        f'[retrieval.vector_store]\nkind = "pgvector"\nurl = "{pg_url}"\n'
        f'table = "t_{uuid.uuid4().hex[:10]}"\ndimension = {DIM}\n'
        '[ingest]\nqueue = "celery"\nembed_batch = 16\nmax_retries = 6\nretry_backoff_s = 0.3\n'
        f"task_time_limit_s = 5\nvisibility_timeout_s = 10\n{extra}{CHUNKER}"
    )
    return path
