"""Linear (PCA) and non-linear (UMAP) projections of an embedding space for the map and the arrow plots.

PCA keeps its basis (mean + components) so the app can place NEW vectors (an uploaded image, an augmented view)
in the same plane linearly; UMAP is only for the overview map and is deterministic under its seed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from sklearn.utils.extmath import randomized_svd

UMAP_SAMPLE_CAP = 20_000
TRANSFORM_CHUNK = 50_000  # rows read from the (memory-mapped) space and transformed at once

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PCABasis:
    """x -> (x - mean) @ components.T; components are orthonormal rows, largest variance first."""

    mean: np.ndarray  # float64 [D]
    components: np.ndarray  # float64 [n, D]
    explained: np.ndarray  # float64 [n]: fraction of total variance per component

    def project(self, x: np.ndarray) -> np.ndarray:
        return project(self, x)


def pca(x: np.ndarray, n: int = 2, sample_cap: int = 200_000, seed: int = 0) -> PCABasis:
    """Principal axes of the rows of ``x`` [N, D] (fitted on at most ``sample_cap`` random rows).

    Signs are fixed (largest-magnitude loading positive) so two builds of the same store agree.
    """
    x = np.asarray(x)
    if len(x) > sample_cap:
        rows = np.sort(np.random.default_rng(seed).choice(len(x), sample_cap, replace=False))
        x = x[rows]
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    total_var = float((xc**2).sum()) / max(len(x) - 1, 1)
    if x.shape[1] > 256 and n <= 16:
        # Few components of a wide space: a seeded randomized SVD costs O(N D n) instead of eigh's O(D^3).

        _, sing, vt = randomized_svd(xc, n, n_iter=7, random_state=seed)
        vals, comps, order = sing**2 / max(len(x) - 1, 1), vt, np.arange(len(sing))
    else:
        vals, vecs = np.linalg.eigh(xc.T @ xc / max(len(x) - 1, 1))
        order = np.argsort(vals)[::-1][:n]
        comps = vecs[:, order].T
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    total = max(total_var, 1e-12)
    if comps.shape[0] < n:  # fewer dimensions than asked: pad with zero axes
        comps = np.vstack([comps, np.zeros((n - comps.shape[0], x.shape[1]))])
    explained = np.zeros(n)
    explained[: len(order)] = vals[order].clip(min=0) / total
    return PCABasis(mean=mean, components=comps, explained=explained)


def project(basis: PCABasis, x: np.ndarray) -> np.ndarray:
    """Coordinates of ``x`` ([D] or [N, D]) in ``basis`` (float32 [n] or [N, n])."""
    x = np.asarray(x, dtype=np.float64)
    return ((x - basis.mean) @ basis.components.T).astype(np.float32)


def stratified_sample(labels: np.ndarray | None, n_total: int, cap: int, seed: int) -> np.ndarray:
    """Sorted ids of at most ``cap`` items, drawn per label in proportion to the label's frequency."""
    rng = np.random.default_rng(seed)
    if labels is None or len(labels) != n_total:
        return np.sort(rng.choice(n_total, cap, replace=False))
    labels = np.asarray(labels)
    picks = []
    for lab in np.unique(labels):
        ids = np.flatnonzero(labels == lab)
        take = max(1, round(cap * len(ids) / n_total))
        picks.append(rng.choice(ids, min(take, len(ids)), replace=False))
    out = np.sort(np.concatenate(picks))
    return out[:cap] if len(out) > cap else out


def umap_2d(
    x: np.ndarray,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    sample_cap: int = UMAP_SAMPLE_CAP,
    labels: np.ndarray | None = None,
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """[N, 2] float32 UMAP coordinates with cosine metric, deterministic under ``seed``.

    Above ``sample_cap`` rows UMAP is fitted on a (label-)stratified sample and the rest is ``transform``ed in
    chunks of :data:`TRANSFORM_CHUNK` rows read from ``x`` (a memmap stays on disk), so a 1M store costs one 20k
    fit plus a linear-time transform. ``timings``, when given, receives the seconds of ``umap_fit`` and
    ``umap_transform``.
    """
    try:
        import umap  # noqa: PLC0415 (heavy: numba compiles on import)
    except ImportError as e:  # pragma: no cover - umap-learn is a pinned requirement
        raise ImportError("UMAP maps need umap-learn: pip install umap-learn") from e
    n = len(x)
    times = {"umap_fit": 0.0, "umap_transform": 0.0}
    if timings is not None:
        timings.update(times)
    if n <= 2:
        return np.zeros((n, 2), np.float32)
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, n - 1),
        min_dist=min_dist,
        metric="cosine",
        n_jobs=1,
        random_state=seed,  # fixes the seed and makes UMAP single-threaded: reproducible coordinates
        init="spectral" if n > n_neighbors + 2 else "random",
    )
    t0 = time.perf_counter()
    if n <= sample_cap:
        out = reducer.fit_transform(np.asarray(x, dtype=np.float32)).astype(np.float32)
        times["umap_fit"] = time.perf_counter() - t0
    else:
        fit_ids = stratified_sample(labels, n, sample_cap, seed)
        out = np.empty((n, 2), np.float32)
        out[fit_ids] = reducer.fit_transform(np.asarray(x[fit_ids], dtype=np.float32))
        times["umap_fit"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rest = np.setdiff1d(np.arange(n), fit_ids)
        for start in range(0, len(rest), TRANSFORM_CHUNK):
            chunk = rest[start : start + TRANSFORM_CHUNK]
            out[chunk] = reducer.transform(np.asarray(x[chunk], dtype=np.float32))
        times["umap_transform"] = time.perf_counter() - t0
    log.info(
        "UMAP: fit on %s items %.1f s, transform of %s items %.1f s",
        f"{min(n, sample_cap):,}",
        times["umap_fit"],
        f"{max(n - sample_cap, 0):,}",
        times["umap_transform"],
    )
    if timings is not None:
        timings.update(times)
    return out
