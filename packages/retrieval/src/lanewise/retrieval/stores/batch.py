"""Whole-batch validation shared by every vector store: reject before anything is written."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from lanewise.core.errors import InvalidRequest


@dataclass(frozen=True)
class Batch:
    ids: list[str]
    vectors: npt.NDArray[np.float32]
    """Unit length: every store ranks by cosine."""
    texts: list[str]
    metadata_json: list[str]
    metadata: list[dict[str, Any]]


def check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not tenant:
        raise InvalidRequest(f"tenant must be a non-empty string, got {tenant!r}")


def check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidRequest(f"k must be an integer >= 1 (got {k!r})", field="k")


def unit_vectors(
    dimension: int, vectors: Sequence[Sequence[float]], *, what: str = "vector"
) -> npt.NDArray[np.float32]:
    for i, vec in enumerate(vectors):
        if len(vec) != dimension:
            raise InvalidRequest(
                f"{what} {i} has dimension {len(vec)}; this store holds {dimension}-d vectors",
                index=i,
            )
    try:
        matrix = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), dimension)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{what}s must be lists of numbers ({exc})") from None
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        bad = int(np.nonzero(~finite)[0][0])
        raise InvalidRequest(f"{what} {bad} has a NaN or infinite component", index=bad)
    norms = np.linalg.norm(matrix, axis=1)
    if (norms == 0).any():
        bad = int(np.nonzero(norms == 0)[0][0])
        raise InvalidRequest(f"{what} {bad} is all zeros (no direction to compare)", index=bad)
    unit: npt.NDArray[np.float32] = (matrix / norms[:, None]).astype(np.float32)
    return unit


def validate_batch(
    dimension: int,
    ids: Sequence[str],
    vectors: Sequence[Sequence[float]],
    texts: Sequence[str],
    metadata: Sequence[Mapping[str, Any]],
) -> Batch | None:
    """The whole batch, checked; None for an empty one."""
    lengths = {len(ids), len(vectors), len(texts), len(metadata)}
    if len(lengths) != 1:
        raise InvalidRequest(
            f"ids, vectors, texts and metadata differ in length: {len(ids)}, "
            f"{len(vectors)}, {len(texts)}, {len(metadata)}"
        )
    if not ids:
        return None
    seen: set[str] = set()
    for i, rid in enumerate(ids):
        if not isinstance(rid, str) or not rid:
            raise InvalidRequest(f"id {i} must be a non-empty string, got {rid!r}", index=i)
        if rid in seen:
            raise InvalidRequest(f"id {rid!r} appears twice in one upsert", index=i)
        seen.add(rid)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequest(f"text {i} must be a string", index=i)
    matrix = unit_vectors(dimension, vectors)
    encoded: list[str] = []
    parsed: list[dict[str, Any]] = []
    for i, meta in enumerate(metadata):
        if not isinstance(meta, Mapping) or not all(isinstance(key, str) for key in meta):
            raise InvalidRequest(f"metadata {i} must be an object with string keys", index=i)
        try:
            text = json.dumps(dict(meta), allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"metadata {i} is not JSON: {exc}", index=i) from None
        encoded.append(text)
        parsed.append(json.loads(text))
    return Batch(list(ids), matrix, list(texts), encoded, parsed)
