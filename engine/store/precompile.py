"""``python -m engine precompile``: compile numba's UMAP kernels once, at install time.

UMAP's first fit in a fresh environment pays 20-70 s of numba compilation. With ``NUMBA_CACHE_DIR`` set
(the Makefile sets it to ``.cache/numba``) the compiled kernels persist, so the first dashboard open and the
first test do not pay it again.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def precompile() -> float:
    """Fit a tiny UMAP so numba compiles and caches its kernels; returns the seconds it took."""
    import umap  # noqa: PLC0415 (heavy: numba compiles on import)

    t0 = time.perf_counter()
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    reducer = umap.UMAP(n_neighbors=10, random_state=0, n_epochs=20)
    reducer.fit_transform(x)
    reducer.transform(x[:10])
    return time.perf_counter() - t0


def _cmd(args: argparse.Namespace) -> int:
    print(f"precompile: UMAP kernels compiled and cached in {precompile():.1f} s")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("precompile", help="compile and cache UMAP's numba kernels (run once after install)")
    p.set_defaults(func=_cmd)
