"""FAISS kNN query latency (p50/p95; a single query and a batch of 256) for the exact flat index and HNSW
(with recall@10 against exact) vs NumPy brute force (normalised matmul + argpartition), on the same N x D
L2-normalised random vectors (default 60,000 x 512)."""

from __future__ import annotations

import argparse

import numpy as np

from engine.benches.common import percentile_ms, print_table, time_it, write_results
from engine.store.index import HNSW_M, build_index, normalize


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=60_000, help="database vectors (default: 60000)")
    p.add_argument("--dim", type=int, default=512, help="vector dimension (default: 512)")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default: 10)")
    p.add_argument("--repeats", type=int, default=30, help="timed repeats per case (default: 30)")
    p.add_argument("--ef-search", type=int, default=128, help="HNSW efSearch (default: 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def _numpy_knn(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    s = q @ x.T
    part = np.argpartition(-s, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def run(args: argparse.Namespace) -> int:
    import faiss

    rng = np.random.default_rng(args.seed)
    x = normalize(rng.normal(size=(args.n, args.dim)).astype(np.float32))
    queries = normalize(rng.normal(size=(256, args.dim)).astype(np.float32))
    exact = build_index(x)
    hnsw = build_index(x, exact_max=0)
    hnsw.hnsw.efSearch = args.ef_search
    _, truth = exact.search(queries, args.k)
    _, approx = hnsw.search(queries, args.k)
    recall = float(np.mean([len(set(a) & set(t)) / args.k for a, t in zip(approx, truth)]))
    cases = {
        "faiss exact (IndexFlatIP)": lambda q: exact.search(q, args.k),
        f"faiss HNSW (M={HNSW_M}, ef={args.ef_search})": lambda q: hnsw.search(q, args.k),
        "numpy brute force": lambda q: _numpy_knn(x, q, args.k),
    }
    rows = []
    for name, fn in cases.items():
        for batch in (1, 256):
            q = queries[:batch]
            t = time_it(lambda fn=fn, q=q: fn(q), repeats=args.repeats, warmup=2)
            rows.append(
                {
                    "method": name,
                    "batch": batch,
                    "p50_ms": percentile_ms(t, 50),
                    "p95_ms": percentile_ms(t, 95),
                    "recall@10": recall if "HNSW" in name else 1.0,
                }
            )
    print_table(
        rows,
        f"kNN query latency, N={args.n:,} x D={args.dim}, k={args.k}, threads={faiss.omp_get_max_threads()}",
    )
    write_results(args.out, {"n": args.n, "dim": args.dim, "k": args.k, "rows": rows})
    return 0
