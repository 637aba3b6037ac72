"""Embedding-like synthetic vectors for the index benchmarks.

Real sentence embeddings live near a low-dimensional manifold and cluster by
topic; i.i.d. Gaussian noise in 384-d does not (every ANN index scores recall
near 0.05 on it, which measures nothing). So: points are drawn around a few
thousand cluster centres in a ``latent``-dimensional space, mapped into
``dim`` dimensions by a fixed random linear map, given a little isotropic
noise and L2-normalised, as MiniLM outputs are. Queries come from the same
distribution but are not in the indexed set.

Metadata for filtered search: ``bucket`` is uniform in [0, 100), independent of
the vectors, so ``bucket < s`` selects s % of the rows (1, 10, 50 %).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def embedding_like(
    n: int,
    *,
    dim: int = 384,
    latent: int = 32,
    clusters: int = 2000,
    seed: int = 0,
) -> F32:
    rng = np.random.default_rng(seed)
    # Structure (centres, projection) is fixed by the base seed so base and
    # query sets (different ``seed``) come from one distribution.
    base = np.random.default_rng(12345)
    centres = base.normal(size=(clusters, latent)).astype(np.float32)
    projection = base.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    out = np.empty((n, dim), dtype=np.float32)
    step = 50_000
    for start in range(0, n, step):
        m = min(step, n - start)
        which = rng.integers(0, clusters, size=m)
        z = centres[which] + 0.8 * rng.normal(size=(m, latent)).astype(np.float32)
        x = z @ projection + 0.1 * rng.normal(size=(m, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def buckets(n: int, *, seed: int = 7) -> npt.NDArray[np.int32]:
    return np.random.default_rng(seed).integers(0, 100, size=n).astype(np.int32)
