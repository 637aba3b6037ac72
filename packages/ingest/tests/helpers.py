"""Reading back what a store holds, through core's VectorStore contract only."""

from __future__ import annotations

from typing import Any

from lanewise.core.protocols import VectorStore


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
