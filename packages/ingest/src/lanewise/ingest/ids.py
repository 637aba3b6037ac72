"""Identities that make ingestion idempotent by construction."""

from __future__ import annotations

import hashlib


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", errors="surrogatepass")
        # Length-prefixed: ("ab", "c") and ("a", "bc") never collide.
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def chunk_id(*, tenant: str, document_id: str, text: str, embedder: str) -> str:
    """hash(tenant, document id, chunk text, embedder id@version): the same chunk, the same id."""
    return _digest(tenant, document_id, text, embedder)[:40]


def document_key(*, content_hash: str, chunker: str, embedder: str) -> str:
    """What a stored document was made from; an equal key means re-ingesting is a no-op."""
    return _digest(content_hash, chunker, embedder)[:40]
