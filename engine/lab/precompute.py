"""What every dashboard visit of a store needs, computed once per store instead of on the first visit.

``python -m engine precompute --stores stores/`` does it for every store under a folder (the lab predictors of
every space, the map's default displacement colouring of every space (engine.lab.gainmaps) and the UMAP coordinates
a store built without them lacks).

``precompute_store(store, model)`` fits the lab's displacement predictors of every space of the model
(engine.lab.predictors, cached beside the store). ``add_umap(store, space)`` writes the UMAP map coordinates of a
store that was built without them (the first open builds the store without UMAP so the dashboard answers at once;
the map shows PCA until the coordinates exist): ``coords_<space>_umap.npy``, the file and layout the store builder
writes (engine.store.format), written atomically, with the store's UMAP settings.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.core.errors import EquiLabError, StoreError
from engine.core.io import atomic_write
from engine.eval.displacement import scored_space
from engine.lab.gainmaps import MAX_ITEMS, precompute_gain
from engine.lab.models import load_model
from engine.lab.predictors import LabPredictors, ensure_predictors
from engine.store.format import Store, StoreOptions, open_store
from engine.store.projection import umap_2d

Progress = Callable[[float, str], None]


def _store(store: Store | str | Path) -> Store:
    return store if isinstance(store, Store) else open_store(store, verify=False)


def precompute_store(store: Store | str | Path, model, progress: Progress | None = None) -> LabPredictors:
    """Fit (or read) the lab predictors of every space of ``model`` for ``store``; returns the scored space's."""
    store = _store(store)
    return ensure_predictors(store, model, scored_space(store.spaces), progress=progress)


def precompute_maps(store: Store | str | Path, model) -> list[str]:
    """The map's default displacement colouring of every space of ``store`` (stores up to MAX_ITEMS items, the
    size the map offers it for); returns the spaces done (a space without predictors is skipped)."""
    store = _store(store)
    if store.n > MAX_ITEMS:
        return []
    done = []
    for space in store.spaces:
        try:
            predictors = ensure_predictors(store, model, space)
        except (EquiLabError, ValueError):  # no predictors for this space: the map says why on first use
            continue
        precompute_gain(store, model, space, predictors)
        done.append(space)
    return done


def umap_path(store_path: str | Path, space: str) -> Path:
    return Path(store_path) / f"coords_{space}_umap.npy"


def missing_umap(store: Store | str | Path) -> list[str]:
    """The spaces of ``store`` without UMAP coordinates."""
    store = _store(store)
    return [s for s in store.spaces if not umap_path(store.path, s).is_file()]


def add_umap(store: Store | str | Path, space: str) -> Path:
    """Compute and write the UMAP coordinates of ``space`` (with the store's recorded UMAP settings, else the
    defaults) when the store has none; returns the file."""
    store = _store(store)
    out = umap_path(store.path, space)
    if out.is_file():
        return out
    defaults = StoreOptions()
    rec = store.manifest.get("umap") or {}
    xy = umap_2d(
        store.embeddings(space),
        seed=int(rec.get("seed", defaults.umap_seed)),
        n_neighbors=int(rec.get("n_neighbors", defaults.umap_neighbors)),
        min_dist=float(rec.get("min_dist", defaults.umap_min_dist)),
        sample_cap=int(rec.get("sample_cap", defaults.umap_sample_cap)),
        labels=np.asarray(store.labels),
    )

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(xy, dtype=np.float32))

    return atomic_write(out, write)


def store_dirs(root: str | Path) -> list[Path]:
    """Every store (a folder with a manifest.json) one or two levels under ``root``."""
    root = Path(root)
    return sorted({m.parent for m in [*root.glob("*/manifest.json"), *root.glob("*/*/manifest.json")]})


def _cmd(args: argparse.Namespace) -> int:
    if not Path(args.stores).is_dir():
        raise StoreError(
            f"{args.stores} is not a folder of stores; build one with `python -m engine embed` or pass --stores DIR"
        )
    stores = store_dirs(args.stores)
    if not stores:
        print(f"precompute: no stores under {args.stores} (nothing to do)")
        return 0
    for path in stores:
        t0 = time.perf_counter()
        store = open_store(path, verify=False)
        model, _ = load_model(store.checkpoint)
        precompute_store(store, model)
        if args.maps:
            precompute_maps(store, model)
        if args.umap:
            for space in missing_umap(store):
                add_umap(store, space)
        print(f"precompute: {path} ready in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "precompute",
        help="fit every store's lab predictors, its map's default displacement colouring (and its missing UMAP "
        "coordinates) once, before the dashboard",
    )
    p.add_argument("--stores", default="stores", help="folder holding the stores (default stores/)")
    p.add_argument("--no-umap", dest="umap", action="store_false", help="leave missing UMAP coordinates")
    p.add_argument(
        "--no-maps", dest="maps", action="store_false", help="skip the map's default displacement colourings"
    )
    p.set_defaults(func=_cmd)
