"""Retrieval that is fast and right: FAISS exact flat vs HNSW (efSearch tuned) vs IVF-PQ with exact re-rank
(nprobe and re-rank factor tuned), each tuned by ``engine.store.index.choose_index`` to a recall@k target on
held-out stored vectors, on the same L2-normalised vectors.

Per index: recall@k against exact search on other held-out vectors (each query's own id excluded), single-query
p50/p95 latency, batch-of-256 throughput, build and tuning time, serialised index size. The cases are timed
interleaved round by round (``engine.benches.common.interleave``; round r searches the r-th query in every case);
medians and ratios vs the flat index are reported.

Vectors: a real store's embeddings (``--store PATH --space S``); by default a store built on the spot from a
shipped checkpoint (``--checkpoint``, default checkpoints/shapes-simclr.json) on the shapes ``--split`` (train,
20,000 images); ``--random`` for isotropic Gaussian vectors (the stress case: no structure to exploit). ``--n`` /
``--dim`` larger than the store, or another dimension, scales real embeddings up by tiling (see :func:`tile_to`);
the output says so.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.benches.common import interleave, percentile_ms, print_table, write_results
from engine.store.build import EmbedJob, build_store
from engine.store.format import StoreOptions, open_store
from engine.store.index import (
    TARGET_RECALL,
    choose_index,
    exact_search,
    held_out,
    normalize,
    recall_at_k,
    search,
    write_index,
)

REPO = Path(__file__).resolve().parents[2]
KINDS = ("flat", "hnsw", "ivfpq")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", type=Path, default=None, help="store whose embeddings to index (default: build one)"
    )
    p.add_argument("--space", default=None, help="embedding space of the store (default: its first)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=REPO / "checkpoints" / "shapes-simclr.json",
        help="checkpoint for the default store (default: checkpoints/shapes-simclr.json)",
    )
    p.add_argument(
        "--split", default="train", help="shapes split of the default store (default: train, 20,000)"
    )
    p.add_argument("--random", action="store_true", help="isotropic Gaussian vectors instead (stress case)")
    p.add_argument(
        "--n", type=int, default=None, help="vectors (default: the store's N; 60000 with --random)"
    )
    p.add_argument(
        "--dim", type=int, default=None, help="dimension (default: the store's; 128 with --random)"
    )
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default: 10)")
    p.add_argument("--target", type=float, default=TARGET_RECALL, help="recall@k target (default: 0.95)")
    p.add_argument("--kinds", default=",".join(KINDS), help="indexes to compare (default: flat,hnsw,ivfpq)")
    p.add_argument("--rounds", type=int, default=200, help="single-query rounds (default: 200)")
    p.add_argument("--batch-rounds", type=int, default=5, help="batch-of-256 rounds (default: 5)")
    p.add_argument("--queries", type=int, default=500, help="held-out queries for recall (default: 500)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def tile_to(x: np.ndarray, n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n`` x ``dim`` unit vectors grown from real ones: projected to ``dim`` by a seeded Gaussian matrix when the
    dimension differs (cosines are approximately kept), then row i is a copy of real row i mod N perturbed by
    Gaussian noise whose norm is about the real vectors' median nearest-neighbour distance, so copies of one
    item spread into its neighbourhood instead of stacking on it. Returns (vectors, a note saying what was done)."""
    rng = np.random.default_rng(seed)
    base = normalize(x)
    notes = []
    if base.shape[1] != dim:
        base = normalize(base @ rng.normal(size=(base.shape[1], dim)).astype(np.float32))
        notes.append(f"projected {x.shape[1]}-d -> {dim}-d by a seeded Gaussian matrix")
    if n <= len(base):
        return base[:n], "; ".join(notes or ["real vectors as stored"])
    qids = held_out(len(base), 1000, seed)
    scores, _ = exact_search(base, base[qids], 1, exclude=qids)
    radius = float(np.median(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * scores[:, 0]))))
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 65_536):
        rows = np.arange(start, min(n, start + 65_536))
        noise = rng.normal(size=(len(rows), dim)).astype(np.float32) * (radius / np.sqrt(dim))
        out[start : start + len(rows)] = normalize(base[rows % len(base)] + noise)
    notes.append(
        f"tiled {len(base):,} real vectors to {n:,}: copy i = real i mod {len(base):,} + Gaussian noise of norm "
        f"≈ {radius:.3f} (their median nearest-neighbour distance)"
    )
    return out, "; ".join(notes)


def _vectors(args: argparse.Namespace) -> tuple[np.ndarray, str]:
    if args.random:
        n, dim = args.n or 60_000, args.dim or 128
        x = np.random.default_rng(args.seed).normal(size=(n, dim)).astype(np.float32)
        return normalize(x), f"isotropic Gaussian random vectors {n:,} x {dim} (stress case)"
    path = args.store
    if path is None:
        job = EmbedJob(
            args.checkpoint, "shapes", args.split, store_root=Path(tempfile.mkdtemp(prefix="equilab-knn-"))
        )
        path = build_store(job, StoreOptions(umap=False))
    store = open_store(path, verify=False)
    space = args.space or store.spaces[0]
    x = np.asarray(store.embeddings(space), dtype=np.float32)
    what = f"store {path} space {space!r} ({len(x):,} x {x.shape[1]})"
    n, dim = args.n or len(x), args.dim or x.shape[1]
    if (n, dim) == x.shape:
        return normalize(x), what
    tiled, note = tile_to(x, n, dim, args.seed)
    return tiled, f"{what}; {note}"


def _one_query_each_call(index, queries: np.ndarray, k: int) -> Callable[[], object]:
    """A case searching the next query on each call (so every case sees query r in round r)."""
    order = itertools.cycle(range(len(queries)))
    return lambda: index.search(queries[next(order)][None], k)


def _size_bytes(index) -> int:
    with tempfile.TemporaryDirectory() as d:
        write_index(index, Path(d) / "i.faiss")
        return os.path.getsize(Path(d) / "i.faiss")


def run(args: argparse.Namespace) -> int:
    import faiss  # noqa: PLC0415 (heavy: imported by the command that uses it)

    x, what = _vectors(args)
    print(f"vectors: {what}", flush=True)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    eval_ids = held_out(len(x), args.queries, args.seed + 1)  # not the tuning queries (seed)
    queries = x[eval_ids]
    _, truth = exact_search(x, queries, args.k, exclude=eval_ids)
    indexes, infos = {}, {}
    for kind in kinds:
        t0 = time.perf_counter()
        index, info = choose_index(
            x,
            target_recall=args.target,
            k=args.k,
            kind=kind,
            seed=args.seed,
            measure_batch=False,
            fallback=False,
        )
        info["total_s"] = time.perf_counter() - t0
        indexes[kind], infos[kind] = index, info
        print(f"built {kind}: {info.get('params')} in {info['total_s']:.1f} s", flush=True)
    single = interleave({k: _one_query_each_call(indexes[k], queries, args.k) for k in kinds}, args.rounds, 5)
    qb = queries[: min(256, len(queries))]
    batch = interleave({k: (lambda i=indexes[k]: i.search(qb, args.k)) for k in kinds}, args.batch_rounds)
    rows = []
    ref = kinds[0]
    for kind in kinds:
        res = search(indexes[kind], queries, args.k, exclude=eval_ids)
        info = infos[kind]
        rows.append(
            {
                "index": kind,
                "params": ",".join(f"{a}={b}" for a, b in info["params"].items()) or "-",
                "recall@k": recall_at_k(res.ids, truth, args.k),
                "tuned_recall": float(info["recall"]),
                "p50_ms": percentile_ms(single[kind], 50),
                "p95_ms": percentile_ms(single[kind], 95),
                "batch256_ms": percentile_ms(batch[kind], 50),
                "batch_qps": len(qb) / float(np.median(batch[kind])),
                "build_s": float(info.get("build_s", info["total_s"])),
                "tune_s": float(info.get("tune_s", 0.0)),
                "size_mb": _size_bytes(indexes[kind]) / 2**20,
            }
        )
    base = rows[0]
    for r in rows:
        r[f"p50_vs_{ref}"] = base["p50_ms"] / r["p50_ms"]
        r[f"batch_vs_{ref}"] = base["batch256_ms"] / r["batch256_ms"]
    title = (
        f"kNN, N={len(x):,} x D={x.shape[1]}, k={args.k}, target recall@{args.k} {args.target}, "
        f"{args.rounds} single-query rounds and {args.batch_rounds} batch rounds interleaved, "
        f"FAISS threads={faiss.omp_get_max_threads()}; ratios: {ref} time / index time (>1 = faster)"
    )
    print_table(rows, title)
    print(f"vectors: {what}")
    write_results(
        args.out,
        {
            "vectors": what,
            "n": len(x),
            "dim": int(x.shape[1]),
            "k": args.k,
            "target": args.target,
            "rows": rows,
        },
    )
    return 0
