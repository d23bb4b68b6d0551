"""FAISS retrieval over one embedding space: cosine similarity as inner product on L2-normalised vectors.

:func:`choose_index` picks the index of a store's space by its size and a recall target:

- **exact** (:class:`faiss.IndexFlatIP`) while one query's scan is cheap: ``N * D <= EXACT_WORK`` (2**24 floats,
  i.e. up to 131,072 vectors at 128-d, 32,768 at 512-d) or ``N <= exact_max`` when a caller sets it. Measured on
  the 2-core development machine (2026-12-02, one query = one FAISS thread, p50 of 40 queries on L2-normalised
  128-d vectors, machine otherwise lightly loaded): a flat scan costs ≈ 30 ns per 128-d vector (memory-bound):
  0.12 ms at 20k, 2.9 ms at 100k, 9.9 ms at 300k, 31 ms at 1M. 2**24 floats is ≈ 4 ms, the largest scan that
  stays well inside an interactive budget; above it the scan grows linearly while a tuned HNSW query stays well
  under a millisecond. Under heavy load (other jobs on both cores) scans above a few ms are preempted and their
  latency explodes (``python -m engine bench knn --random --kinds flat --n 131072 --dim 128``: p50 60 ms,
  ``--n 1000000``: 230 ms), which only strengthens the case for a small exact range. Reproduce with ``bench knn
  --random --kinds flat --n N --dim D``.
- **approximate** above: HNSW (``kind="hnsw"``, the default) or IVF-PQ with an exact re-rank
  (``kind="ivfpq"``). Its search parameter (HNSW ``efSearch``, IVF ``nprobe``) is raised along a ladder until
  recall@k on held-out queries reaches the target plus a sampling margin (:func:`recall_margin`); if no rung reaches it, the exact flat index is kept instead
  (correct first), and the info says why.

recall@k (:func:`recall_at_k`) is the fraction of the exact top-k ids that the index returns in its top k, averaged
over queries. The held-out queries are ``n_queries`` stored vectors drawn with a seeded generator; each query's
own id is removed from both the exact and the approximate answer (otherwise every query would trivially find
itself), so the measure is the recall of the k *other* nearest items.

The returned ``info`` (kind, exact, params, recall, queries, build seconds, batch timings) is JSON-able: the store
writes it into its manifest and the app shows it next to results (:func:`describe`). Exact search stays available
on demand (``search(..., exact=True)`` scans the flat vectors that HNSW and the re-ranked IVF-PQ keep;
:func:`exact_search` scans a memmapped array blockwise).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.errors import StoreError

EXACT_WORK = 2**24  # N * D up to which the exact flat index is used (≈ 4 ms per query on 2 cores, see above)
EXACT_MAX = (
    None  # an explicit N cap overrides EXACT_WORK when given (StoreOptions.exact_max, embed --exact-max)
)
TARGET_RECALL = 0.95
TUNE_QUERIES = 500
HNSW_M = 32  # graph degree
HNSW_EF_CONSTRUCTION = 80
EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE_LADDER = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512)
REFINE_FACTORS = (4, 16, 64)  # IVF-PQ returns k * factor candidates, re-ranked with the exact vectors
BATCH_ROUTE = 64  # batches at least this large go to the exact scan when the build measured it faster
KINDS = ("auto", "flat", "hnsw", "ivfpq")


@dataclass(frozen=True)
class SearchResult:
    """Top-k neighbours of each query row (rows are queries, columns are ranks, best first)."""

    ids: np.ndarray  # int64 [Q, k]: store ids (-1 where fewer than k items exist)
    scores: np.ndarray  # float32 [Q, k]: cosine similarities
    latency_ms: float  # wall time of the FAISS call
    space: str = ""
    k: int = 0
    exact: bool = True  # False when an approximate index answered


def _faiss() -> Any:
    try:
        import faiss  # noqa: PLC0415 (heavy: imported on the first search)
    except ImportError as e:  # pragma: no cover - faiss-cpu is a pinned requirement
        raise ImportError("FAISS is needed for retrieval: pip install faiss-cpu") from e
    return faiss


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32, C-contiguous); zero rows stay zero."""
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over query rows of |found[:k] ∩ truth[:k]| / k (ids; -1 padding never counts)."""
    found, truth = np.atleast_2d(found)[:, :k], np.atleast_2d(truth)[:, :k]
    hits = [len((set(a.tolist()) & set(t.tolist())) - {-1}) for a, t in zip(found, truth)]
    return float(np.mean(hits) / k) if hits else 1.0


def use_exact(n: int, dim: int, exact_max: int | None = EXACT_MAX) -> bool:
    """Whether a space of ``n`` x ``dim`` vectors gets the exact flat index (module docstring)."""
    return n <= exact_max if exact_max is not None else n * dim <= EXACT_WORK


def _add_normalized(index: Any, vectors: np.ndarray, batch: int = 65_536) -> None:
    """Add ``vectors`` in normalised batches, so a memmapped store never has to fit in memory twice."""
    for start in range(0, len(vectors), batch):
        index.add(normalize(vectors[start : start + batch]))


def _new_flat(d: int) -> Any:
    return _faiss().IndexFlatIP(d)


def _new_hnsw(d: int, m: int = HNSW_M) -> Any:
    faiss = _faiss()
    index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return index


def ivf_lists(n: int) -> int:
    """IVF list count: the power of two nearest sqrt(N), at least 16 and at most N / 39 (FAISS's k-means wants
    ≥ 39 points per centroid); 1024 at 1M, so training and assignment stay cheap on 2 cores."""
    want = np.sqrt(max(n, 1))
    nlist = int(2 ** round(np.log2(want)))
    return int(max(16, min(nlist, max(16, n // 39))))


def pq_bytes(d: int) -> int:
    """PQ code size: the largest divisor of D not above D / 4 (4 dimensions per byte; 32 bytes at 128-d)."""
    for m in range(max(1, d // 4), 0, -1):
        if d % m == 0:
            return m
    return 1


def _new_ivfpq(vectors: np.ndarray, seed: int, train_min: int = 16_384) -> Any:
    faiss = _faiss()
    n, d = vectors.shape
    nlist, m = ivf_lists(n), pq_bytes(d)
    base = faiss.index_factory(d, f"IVF{nlist},PQ{m}", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(base)  # IndexIVFPQ
    ivf.cp.niter = (
        10  # k-means iterations for the lists and the PQ codebooks (FAISS: 25): 2.5x faster to train,
    )
    ivf.pq.cp.niter = 10  # the re-rank makes up for the coarser codebooks (recall is tuned afterwards anyway)
    ivf.pq.cp.max_points_per_centroid = 64
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, max(train_min, 39 * nlist)), replace=False))
    base.train(normalize(vectors[sample]))
    index = faiss.IndexRefineFlat(base)
    index.k_factor = REFINE_FACTORS[0]
    return index


def build_index(vectors: np.ndarray, exact_max: int | None = EXACT_MAX, kind: str = "auto") -> Any:
    """A cosine index of ``vectors`` [N, D] without tuning (HNSW at its default efSearch); see :func:`choose_index`."""
    n, d = vectors.shape
    kind = _resolve_kind(kind, n, d, exact_max)
    index = _new_flat(d) if kind == "flat" else _new_hnsw(d) if kind == "hnsw" else _new_ivfpq(vectors, 0)
    _add_normalized(index, vectors)
    return index


def _resolve_kind(kind: str, n: int, d: int, exact_max: int | None) -> str:
    if kind not in KINDS:
        raise StoreError(f"unknown index kind {kind!r}; choose from {list(KINDS)}.")
    if kind != "auto":
        return kind
    return "flat" if use_exact(n, d, exact_max) else "hnsw"


def set_param(index: Any, name: str, value: int) -> None:
    """Set a search parameter: ``efSearch`` (HNSW), ``nprobe`` (IVF) or ``k_factor`` (re-rank)."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    if name == "efSearch":
        index.hnsw.efSearch = int(value)
    elif name == "nprobe":
        faiss.extract_index_ivf(index).nprobe = int(value)
    elif name == "k_factor":
        index.k_factor = int(value)
    else:
        raise StoreError(f"unknown index parameter {name!r}")


def apply_info(index: Any, info: dict[str, Any] | None) -> Any:
    """Set the tuned search parameters recorded in ``info`` on a loaded index (returns it)."""
    for name in ("efSearch", "nprobe", "k_factor"):
        if info and name in info.get("params", {}):
            set_param(index, name, info["params"][name])
    return index


def flat_of(index: Any) -> Any | None:
    """The exact flat index over the normalised vectors that ``index`` keeps (itself, HNSW's storage, the
    re-rank table), or None (e.g. a bare IVF-PQ)."""
    faiss = _faiss()
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexFlat):
        return idx
    if isinstance(idx, faiss.IndexHNSW):
        inner = faiss.downcast_index(idx.storage)
        return inner if isinstance(inner, faiss.IndexFlat) else None
    if isinstance(idx, faiss.IndexRefine):
        inner = faiss.downcast_index(idx.refine_index)
        return inner if isinstance(inner, faiss.IndexFlat) else None
    return None


def index_kind(index: Any) -> str:
    """ "flat", "hnsw", "ivfpq" or the FAISS class name of ``index``."""
    faiss = _faiss()
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexFlat):
        return "flat"
    if isinstance(idx, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(idx, (faiss.IndexRefine, faiss.IndexIVF)):
        return "ivfpq"
    return type(idx).__name__


def info_of(index: Any) -> dict[str, Any]:
    """What can be said of an index without build-time measurements (stores written before index info existed):
    a flat index is exact; anything else is approximate with an unmeasured recall."""
    kind = index_kind(index)
    info: dict[str, Any] = {
        "kind": kind,
        "exact": kind == "flat",
        "params": {},
        "recall": 1.0 if kind == "flat" else None,
    }
    if kind == "hnsw":
        info["params"] = {
            "M": int(_faiss().downcast_index(index).hnsw.nb_neighbors(1)),
            "efSearch": int(_faiss().downcast_index(index).hnsw.efSearch),
        }
    return info


def describe(info: dict[str, Any] | None) -> str:
    """One line for the app: "exact (flat)" or "approximate (HNSW ef=64), recall@10 0.97 measured at build"."""
    if not info or info.get("exact"):
        return "exact (flat)"
    p = info.get("params", {})
    what = {
        "hnsw": f"HNSW ef={p.get('efSearch', '?')}",
        "ivfpq": f"IVF-PQ nprobe={p.get('nprobe', '?')}, re-rank ×{p.get('k_factor', '?')}",
    }.get(info.get("kind", ""), str(info.get("kind")))
    rec = info.get("recall")
    if rec is None:
        return f"approximate ({what}), recall not measured (store built before recall was recorded)"
    return f"approximate ({what}), recall@{info.get('k', 10)} {rec:.4g} measured at build"


def exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray | None = None, block: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (scores [Q, k], ids [Q, k]) by cosine of ``queries`` against ``vectors`` [N, D] (e.g. a
    store's memmap), scanned in normalised blocks of ``block`` rows; ``exclude`` [Q] drops one id per query."""
    faiss = _faiss()
    q = normalize(queries)
    extra = 1 if exclude is not None else 0
    kk = min(k + extra, len(vectors))
    heap = faiss.ResultHeap(len(q), kk, keep_max=True)
    for start in range(0, len(vectors), block):
        xb = normalize(vectors[start : start + block])
        d, i = faiss.knn(q, xb, min(kk, len(xb)), metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(d, np.where(i >= 0, i + start, -1))
    heap.finalize()
    ids, scores = heap.I, heap.D
    if exclude is not None:
        ids, scores = _drop(ids, scores, np.asarray(exclude).reshape(-1), k)
    ids, scores = _pad(ids, scores, k)
    return scores, ids


def _timed_search(index: Any, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    t0 = time.perf_counter()
    scores, ids = index.search(q, k)
    return scores, ids, (time.perf_counter() - t0) * 1e3


def search(
    index: Any,
    queries: np.ndarray,
    k: int = 10,
    space: str = "",
    exclude: np.ndarray | None = None,
    exact: bool = False,
    info: dict[str, Any] | None = None,
) -> SearchResult:
    """Top-``k`` store items by cosine similarity for each query vector (a new image's or a view's embedding).

    ``exclude`` ([Q] store ids, optional) drops that id from each query's result, e.g. the query item itself.
    ``exact=True`` scans the index's flat vectors instead of the approximate structure (StoreError if it keeps
    none). With the build ``info``, a batch of at least BATCH_ROUTE queries also goes to the exact scan when the
    build measured the scan faster per batch (HNSW answers large batches slower than a flat scan).
    """
    if k < 1:
        raise StoreError(f"k must be >= 1, got {k}")
    q = normalize(queries)
    if q.shape[1] != index.d:
        raise StoreError(
            f"query dimension {q.shape[1]} does not match the index dimension {index.d} (space {space!r}); "
            "embed the query with the same model and space as the store."
        )
    target, is_exact = index, index_kind(index) == "flat"
    if not is_exact and (exact or _route_batch(info, len(q))):
        target = flat_of(index)
        if target is None:
            raise StoreError(
                f"this {index_kind(index)} index keeps no exact vectors (space {space!r}); "
                "use engine.store.index.exact_search on the store's embeddings."
            )
        is_exact = True
    extra = 1 if exclude is not None else 0
    scores, ids, latency = _timed_search(target, q, min(k + extra, index.ntotal) if index.ntotal else k)
    if exclude is not None:
        ids, scores = _drop(ids, scores, np.asarray(exclude).reshape(-1), k)
    ids, scores = _pad(ids, scores, k)
    return SearchResult(
        ids=ids.astype(np.int64),
        scores=scores.astype(np.float32),
        latency_ms=latency,
        space=space,
        k=k,
        exact=is_exact,
    )


def _route_batch(info: dict[str, Any] | None, nq: int) -> bool:
    b = (info or {}).get("batch256_ms") or {}
    return nq >= BATCH_ROUTE and "exact" in b and "index" in b and b["exact"] < b["index"]


def search_ids(
    index: Any,
    ids: np.ndarray,
    k: int = 10,
    space: str = "",
    exclude_self: bool = True,
    exact: bool = False,
    info: dict[str, Any] | None = None,
) -> SearchResult:
    """Neighbours of store items given by id: their vectors are reconstructed from the index itself."""
    ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
    if len(ids) and (ids.min() < 0 or ids.max() >= index.ntotal):
        raise StoreError(f"store ids must lie in [0, {index.ntotal}), got {ids.min()}..{ids.max()}")
    q = np.stack([index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, index.d), np.float32)
    return search(index, q, k, space=space, exclude=ids if exclude_self else None, exact=exact, info=info)


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


def recall_margin(target: float, n_queries: int, k: int) -> float:
    """How far above ``target`` the tuning recall must lie so that recall on *other* queries is unlikely to fall
    below it: 1.96 binomial standard errors of a recall near ``target`` from ``n_queries * k`` neighbour slots
    (0.006 at 0.95, 500 queries, k=10). Without it, an index tuned to exactly 0.950 measured 0.949 on fresh
    queries (bench knn at 1M)."""
    return float(1.96 * np.sqrt(target * (1.0 - target) / max(1, n_queries * k)))


def held_out(n: int, n_queries: int = TUNE_QUERIES, seed: int = 0) -> np.ndarray:
    """Sorted ids of ``min(n, n_queries)`` stored vectors used as tuning queries (seeded, without repeats)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, n_queries), replace=False))


def tune(
    index: Any,
    groups: list[tuple[dict[str, int], str, tuple[int, ...]]],
    queries: np.ndarray,
    qids: np.ndarray,
    truth: np.ndarray,
    k: int,
    target: float,
) -> tuple[dict[str, int], float, list[dict[str, Any]]]:
    """Raise one search parameter along its ladder, group by group (each group fixes other parameters, e.g. the
    re-rank factor), until recall@k of ``index`` (query ids excluded) reaches ``target``; a group is left early
    when two rungs in a row gain < 0.001. Returns (parameters, recall, every setting tried with its recall); the
    best setting tried when none reaches the target."""
    tried: list[dict[str, Any]] = []
    best: tuple[float, dict[str, int]] = (-1.0, {})
    for fixed, name, ladder in groups:
        flat_steps = 0
        prev = -1.0
        for v in ladder:
            setting = {**fixed, name: int(v)}
            for key, val in setting.items():
                set_param(index, key, val)
            rec = recall_at_k(search(index, queries, k, exclude=qids).ids, truth, k)
            tried.append({**setting, "recall": round(rec, 4)})
            if rec > best[0]:
                best = (rec, setting)
            if rec >= target:
                return setting, rec, tried
            flat_steps = flat_steps + 1 if rec - prev < 1e-3 else 0
            prev = rec
            if flat_steps >= 2:
                break
    for key, val in best[1].items():
        set_param(index, key, val)
    return best[1], best[0], tried


def _batch_ms(fn: Any, q: np.ndarray, k: int, repeats: int = 3) -> float:
    """Median ms of ``fn(q, k)`` over ``repeats`` calls after one warm-up."""
    fn(q, k)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(q, k)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def choose_index(
    vectors: np.ndarray,
    target_recall: float = TARGET_RECALL,
    k: int = 10,
    exact_max: int | None = EXACT_MAX,
    kind: str = "auto",
    n_queries: int = TUNE_QUERIES,
    seed: int = 0,
    measure_batch: bool = True,
    ladder: tuple[int, ...] | None = None,
    fallback: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """The cosine index of ``vectors`` [N, D] and its JSON-able info (module docstring): exact when small, else an
    approximate index tuned on held-out stored vectors until recall@k >= ``target_recall``. ``ladder`` replaces
    the values tried for efSearch (HNSW) or nprobe (IVF-PQ). ``fallback=False`` keeps the approximate index at its
    best setting when the target is not reached (benchmarks), with ``target_met`` False in the info."""
    if not 0.0 < target_recall <= 1.0:
        raise StoreError(f"target recall must lie in (0, 1], got {target_recall}")
    n, d = vectors.shape
    chosen = _resolve_kind(kind, n, d, exact_max)
    t0 = time.perf_counter()
    base = {"k": int(k), "n": int(n), "dim": int(d), "target_recall": float(target_recall)}
    if chosen == "flat":
        index = _new_flat(d)
        _add_normalized(index, vectors)
        info = {"kind": "flat", "exact": True, "params": {}, "recall": 1.0, "n_queries": 0, **base}
        return index, {**info, "build_s": round(time.perf_counter() - t0, 3)}
    if chosen == "hnsw":
        index = _new_hnsw(d)
        params: dict[str, Any] = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
        groups = [({}, "efSearch", ladder or EF_LADDER)]
    else:
        index = _new_ivfpq(vectors, seed)
        base_ivf = _faiss().extract_index_ivf(index)
        params = {"nlist": int(base_ivf.nlist), "pq_m": pq_bytes(d)}
        probes = ladder or tuple(p for p in NPROBE_LADDER if p <= base_ivf.nlist)
        groups = [({"k_factor": f}, "nprobe", probes) for f in REFINE_FACTORS]
    _add_normalized(index, vectors)
    build_s = time.perf_counter() - t0
    qids = held_out(n, n_queries, seed)
    queries = normalize(vectors[qids])
    _, truth = exact_search(vectors, queries, k, exclude=qids)
    margin = recall_margin(target_recall, len(qids), k)
    setting, rec, tried = tune(index, groups, queries, qids, truth, k, target_recall + margin)
    info = {
        "kind": chosen,
        "exact": False,
        "params": {**params, **setting},
        "recall": round(rec, 4),
        "n_queries": len(qids),
        "tuning": tried,
        "margin": round(margin, 4),
        "target_met": bool(rec >= target_recall + margin),
        **base,
    }
    if measure_batch:
        flat = flat_of(index)
        q256 = queries[: min(256, len(queries))]
        info["batch256_ms"] = {
            "index": round(_batch_ms(index.search, q256, k), 3),
            "exact": round(_batch_ms(flat.search, q256, k), 3) if flat is not None else None,
        }
    if rec < target_recall + margin and fallback:
        flat_index = _new_flat(d)
        _add_normalized(flat_index, vectors)
        note = (
            f"{chosen} reached recall@{k} {rec:.3f} < {target_recall} + margin {margin:.3f} at best ({setting}); "
            "exact index kept"
        )
        return flat_index, {
            **base,
            "kind": "flat",
            "exact": True,
            "params": {},
            "recall": 1.0,
            "n_queries": len(qids),
            "note": note,
            "tuning": tried,
            "build_s": round(time.perf_counter() - t0, 3),
        }
    info["build_s"] = round(build_s, 3)
    info["tune_s"] = round(time.perf_counter() - t0 - build_s, 3)
    return index, info


def index_bytes(index: Any) -> int:
    """Serialised size of ``index`` in bytes."""
    return int(_faiss().serialize_index(index).nbytes)


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
