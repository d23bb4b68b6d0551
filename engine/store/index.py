"""FAISS retrieval over one embedding space: cosine similarity as inner product on L2-normalised vectors.

Exact :class:`faiss.IndexFlatIP` up to ``exact_max`` vectors (default 1M); HNSW above it, where an exact scan of
every query would cost more than the app's interactive budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.errors import StoreError

EXACT_MAX = 1_000_000
HNSW_M = 32  # graph degree; recall depends on the data: near 1 on real embeddings, low on isotropic noise (bench knn)


@dataclass(frozen=True)
class SearchResult:
    """Top-k neighbours of each query row (rows are queries, columns are ranks, best first)."""

    ids: np.ndarray  # int64 [Q, k]: store ids (-1 where fewer than k items exist)
    scores: np.ndarray  # float32 [Q, k]: cosine similarities
    latency_ms: float  # wall time of the FAISS call
    space: str = ""
    k: int = 0


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a pinned requirement
        raise ImportError("FAISS is needed for retrieval: pip install faiss-cpu") from e
    return faiss


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32, C-contiguous); zero rows stay zero."""
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def build_index(vectors: np.ndarray, exact_max: int = EXACT_MAX, batch: int = 65_536) -> Any:
    """A cosine index of ``vectors`` [N, D]: exact flat inner product if N <= exact_max, else HNSW.

    Vectors are normalised in batches so a memmapped store never has to fit in memory twice.
    """
    faiss = _faiss()
    n, d = vectors.shape
    if n <= exact_max:
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    for start in range(0, n, batch):
        index.add(normalize(vectors[start : start + batch]))
    return index


def search(
    index: Any, queries: np.ndarray, k: int = 10, space: str = "", exclude: np.ndarray | None = None
) -> SearchResult:
    """Top-``k`` store items by cosine similarity for each query vector (a new image's or a view's embedding).

    ``exclude`` ([Q] store ids, optional) drops that id from each query's result, e.g. the query item itself.
    """
    if k < 1:
        raise StoreError(f"k must be >= 1, got {k}")
    q = normalize(queries)
    if q.shape[1] != index.d:
        raise StoreError(
            f"query dimension {q.shape[1]} does not match the index dimension {index.d} (space {space!r}); "
            "embed the query with the same model and space as the store."
        )
    extra = 1 if exclude is not None else 0
    t0 = time.perf_counter()
    scores, ids = index.search(q, min(k + extra, index.ntotal) if index.ntotal else k)
    latency = (time.perf_counter() - t0) * 1e3
    if exclude is not None:
        ids, scores = _drop(ids, scores, np.asarray(exclude).reshape(-1), k)
    ids, scores = _pad(ids, scores, k)
    return SearchResult(
        ids=ids.astype(np.int64), scores=scores.astype(np.float32), latency_ms=latency, space=space, k=k
    )


def search_ids(
    index: Any, ids: np.ndarray, k: int = 10, space: str = "", exclude_self: bool = True
) -> SearchResult:
    """Neighbours of store items given by id: their vectors are reconstructed from the index itself."""
    ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
    if len(ids) and (ids.min() < 0 or ids.max() >= index.ntotal):
        raise StoreError(f"store ids must lie in [0, {index.ntotal}), got {ids.min()}..{ids.max()}")
    q = np.stack([index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, index.d), np.float32)
    return search(index, q, k, space=space, exclude=ids if exclude_self else None)


def _drop(ids: np.ndarray, scores: np.ndarray, exclude: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    keep_ids, keep_scores = [], []
    for row_ids, row_scores, ex in zip(ids, scores, exclude):
        mask = row_ids != ex
        keep_ids.append(row_ids[mask][:k])
        keep_scores.append(row_scores[mask][:k])
    return _pad_rows(keep_ids, keep_scores, k)


def _pad_rows(ids: list, scores: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    out_ids = np.full((len(ids), k), -1, np.int64)
    out_scores = np.full((len(ids), k), -np.inf, np.float32)
    for r, (i, s) in enumerate(zip(ids, scores)):
        out_ids[r, : len(i)] = i
        out_scores[r, : len(s)] = s
    return out_ids, out_scores


def _pad(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if ids.shape[1] >= k:
        return ids[:, :k], scores[:, :k]
    return _pad_rows(list(ids), list(scores), k)


def write_index(index: Any, path: str | Path) -> None:
    """Serialise ``index`` to ``path`` (call inside an atomic directory or through atomic_write)."""
    _faiss().write_index(index, str(path))


def read_index(path: str | Path) -> Any:
    """Load a FAISS index written by :func:`write_index`; StoreError if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"FAISS index {path} is missing; rebuild the store.")
    try:
        return _faiss().read_index(str(path))
    except RuntimeError as e:
        raise StoreError(f"FAISS index {path} cannot be read ({e}); rebuild the store.") from e
