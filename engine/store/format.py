"""Embedding stores on disk: one directory per (checkpoint, dataset, split), verified on open.

Layout (every file listed in ``manifest.json`` with its size and sha256)::

    manifest.json              version, source (checkpoint sha256, method, dataset, split), spaces, versions
    <space>.npy                float32 (or float16) [N, D] embeddings, memory-mappable
    meta.parquet               label + per-item metadata columns (shapes factors, paths)
    thumbs.npy                 uint8 [N, t, t, 3] thumbnails (32 px images as they are, larger ones at 64 px)
    pca_<space>.npz            PCA basis (mean, components [3, D], explained) for projecting NEW vectors
    coords_<space>_<kind>.npy  float32 map coordinates, kind in pca2 / pca3 / umap
    <space>.faiss              FAISS cosine index (kind, tuned parameters and measured recall in the manifest's
                               "index" entry, see engine.store.index.choose_index)
"""

from __future__ import annotations

import importlib.metadata as md
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from engine import __version__ as engine_version
from engine.core.errors import StoreError
from engine.core.io import atomic_dir, atomic_write_json, open_memmap, sha256_file
from engine.store.index import (
    TARGET_RECALL,
    SearchResult,
    apply_info,
    choose_index,
    exact_search,
    flat_of,
    info_of,
    read_index,
    search,
    write_index,
)
from engine.store.projection import PCABasis, pca, project, umap_2d

MANIFEST_VERSION = 1
COORD_KINDS = ("pca2", "pca3", "umap")
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class StoreOptions:
    """How a store is built (recorded in its manifest)."""

    dtype: str = "float32"  # "float16" halves disk and page cache for very large N
    exact_max: int | None = (
        None  # exact flat index up to this N; None: by N x D (engine.store.index.EXACT_WORK)
    )
    target_recall: float = TARGET_RECALL  # recall@10 an approximate index is tuned to on held-out items
    index_kind: str = "auto"  # "auto" (flat, else HNSW), "flat", "hnsw" or "ivfpq"
    umap: bool = True
    umap_seed: int = 0
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1
    umap_sample_cap: int = 20_000
    thumb_size: int = 64  # larger images are downscaled to this side; 32 px images are kept as they are


@dataclass(frozen=True)
class Store:
    """A verified store; arrays are memory-mapped on demand (nothing is loaded at open)."""

    path: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(self.manifest["spaces"])

    @property
    def n(self) -> int:
        return int(self.manifest["n"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.manifest["classes"])

    @property
    def checkpoint(self) -> Path:
        return Path(self.manifest["source"]["checkpoint"])

    @property
    def meta(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "meta.parquet")

    @property
    def labels(self) -> np.ndarray:
        return self.meta["label"].to_numpy(np.int64)

    @property
    def thumbnails(self) -> np.ndarray:
        return np.load(self.path / "thumbs.npy", mmap_mode="r", allow_pickle=False)

    def _space(self, space: str) -> str:
        if space not in self.manifest["spaces"]:
            raise StoreError(f"store {self.path} has no space {space!r}; choose from {list(self.spaces)}.")
        return space

    def embeddings(self, space: str) -> np.ndarray:
        """Read-only memmap [N, D] of ``space``."""
        return np.load(self.path / f"{self._space(space)}.npy", mmap_mode="r", allow_pickle=False)

    def coords(self, space: str, kind: str = "umap") -> np.ndarray:
        """Map coordinates of ``space``: kind "umap" ([N, 2]), "pca2" ([N, 2]) or "pca3" ([N, 3])."""
        if kind not in COORD_KINDS:
            raise StoreError(f"unknown coordinate kind {kind!r}; choose from {list(COORD_KINDS)}.")
        path = self.path / f"coords_{self._space(space)}_{kind}.npy"
        if not path.is_file():
            raise StoreError(
                f"{path} is missing (store built without {kind})", fix=rebuild_command(self.manifest)
            )
        return np.load(path, allow_pickle=False)

    def pca_basis(self, space: str):
        """The store's PCA basis of ``space`` (engine.store.projection.PCABasis, 3 components)."""

        with np.load(self.path / f"pca_{self._space(space)}.npz", allow_pickle=False) as z:
            return PCABasis(mean=z["mean"], components=z["components"], explained=z["explained"])

    def index(self, space: str):
        """The FAISS cosine index of ``space`` with its tuned search parameters (loaded from disk on each call;
        callers cache it)."""

        return apply_info(
            read_index(self.path / f"{self._space(space)}.faiss"), self.manifest.get("index", {}).get(space)
        )

    def index_info(self, space: str, index: Any = None) -> dict[str, Any]:
        """How ``space`` is indexed: kind, exact, params, recall measured at build (engine.store.index.choose_index).

        Stores written before this was recorded describe their index from its type (flat = exact, recall 1.0)."""
        recorded = self.manifest.get("index", {}).get(self._space(space))
        if recorded is not None:
            return recorded
        return info_of(index if index is not None else self.index(space))

    def search(
        self,
        space: str,
        queries: np.ndarray,
        k: int = 10,
        exact: bool = False,
        exclude: np.ndarray | None = None,
        index: Any = None,
    ) -> SearchResult:
        """Top-``k`` of each query row in ``space``; ``exact=True`` scans every stored vector (the index's flat
        vectors, or the memmapped embeddings when the index keeps none). Pass a cached ``index`` to skip reading
        it from disk."""
        index = index if index is not None else self.index(space)
        info = self.index_info(space, index)
        if exact and flat_of(index) is None:
            t0 = time.perf_counter()
            scores, ids = exact_search(self.embeddings(space), queries, k, exclude=exclude)
            ms = (time.perf_counter() - t0) * 1e3
            return SearchResult(ids=ids, scores=scores, latency_ms=ms, space=space, k=k, exact=True)
        return search(index, queries, k, space=space, exclude=exclude, exact=exact, info=info)


def rebuild_command(manifest: dict[str, Any] | None, path: Path | None = None) -> str:
    """The command that rebuilds a store (every StoreError carries it as ``fix``)."""
    src = (manifest or {}).get("source", {})
    ckpt = src.get("checkpoint", "<checkpoint.safetensors>")
    ds, split = src.get("dataset", "<dataset>"), src.get("split", "<split>")
    out = src.get("store_root") or (str(path.parent) if path else "stores")
    root = f" --data-root {src['data_root']}" if src.get("data_root") else ""
    data = src.get("data") if isinstance(src.get("data"), dict) else {}
    opts = data.get("options") if isinstance(data.get("options"), dict) else {}
    root += "".join(
        f" --data-option {k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in opts.items()
    )
    return f"python -m engine embed --checkpoint {ckpt} --dataset {ds} --split {split}{root} --out {out} --overwrite"


def _read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / "manifest.json"
    if not path.is_dir():
        raise StoreError(f"store {path} does not exist", fix=rebuild_command(None, path))
    if not mpath.is_file():
        raise StoreError(
            f"store {path} has no manifest.json (incomplete build?)", fix=rebuild_command(None, path)
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{mpath} is not valid JSON ({e})", fix=rebuild_command(None, path)) from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise StoreError(f"{mpath} is not an EquiLab store manifest", fix=rebuild_command(None, path))
    return manifest


def verify_files(path: Path, manifest: dict[str, Any], full: bool = True) -> None:
    """Check every file in the manifest exists with its recorded size (and sha256 when ``full``)."""
    for name, rec in manifest["files"].items():
        f = path / name
        if not f.is_file():
            raise StoreError(f"store file {f} is missing", fix=rebuild_command(manifest, path))
        size = f.stat().st_size
        if size != rec["size"]:
            raise StoreError(
                f"store file {f} has {size} bytes, the manifest says {rec['size']} (truncated or replaced)",
                fix=rebuild_command(manifest, path),
            )
        if full and sha256_file(f) != rec["sha256"]:
            raise StoreError(
                f"store file {f} was modified (sha256 mismatch)", fix=rebuild_command(manifest, path)
            )


def open_store(path: str | Path, verify: bool = True, expect_checkpoint_sha: str | None = None) -> Store:
    """Open and check a store: manifest version, source checkpoint, file sizes, and (``verify``) every sha256.

    ``verify=False`` skips the hashing (sizes are still checked) for fast re-opens.
    """
    path = Path(path)
    manifest = _read_manifest(path)
    version = manifest.get("version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise StoreError(
            f"store {path} has manifest version {version!r}; this engine reads up to {MANIFEST_VERSION}. "
            "Update the engine or rebuild the store",
            fix=rebuild_command(manifest, path),
        )
    have = manifest.get("source", {}).get("checkpoint_sha256")
    if expect_checkpoint_sha is not None and have != expect_checkpoint_sha:
        raise StoreError(
            f"store {path} was built from checkpoint sha256 {str(have)[:12]}…, not {expect_checkpoint_sha[:12]}…",
            fix=rebuild_command(manifest, path),
        )
    verify_files(path, manifest, full=verify)
    return Store(path=path, manifest=manifest)


def _thumbs(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 thumbnails: images at most ``size`` px are kept, larger ones are resized (PIL, bilinear)."""
    if images.shape[1] <= size and images.shape[2] <= size:
        return np.ascontiguousarray(images, dtype=np.uint8)

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


def write_thumbs(dirpath: Path, images: np.ndarray, size: int, batch: int = 4096) -> None:
    """thumbs.npy written in batches into a preallocated memmap."""
    h, w = images.shape[1:3]
    t = (h, w) if h <= size and w <= size else (size, size)
    out = open_memmap(dirpath / "thumbs.npy", np.uint8, (len(images), *t, 3))
    for s in range(0, len(images), batch):
        out[s : s + batch] = _thumbs(np.asarray(images[s : s + batch]), size)
    out.flush()
    del out


def write_meta(dirpath: Path, labels: np.ndarray, meta: dict[str, np.ndarray]) -> None:
    cols = {"label": np.asarray(labels, np.int64)}
    cols.update({k: np.asarray(v) for k, v in meta.items() if k != "label"})
    pd.DataFrame(cols).to_parquet(dirpath / "meta.parquet", index=False)


def derive_space(
    dirpath: Path, space: str, options: StoreOptions, labels: np.ndarray | None
) -> tuple[dict[str, float], dict[str, Any]]:
    """PCA basis + coordinates, UMAP coordinates and the FAISS index of one written ``<space>.npy``.

    Returns the seconds spent per stage (for the build-time benchmark) and the index info for the manifest.
    """

    x = np.load(dirpath / f"{space}.npy", mmap_mode="r", allow_pickle=False)
    times = {}
    t0 = time.perf_counter()
    basis = pca(x, 3)
    np.savez(
        dirpath / f"pca_{space}.npz", mean=basis.mean, components=basis.components, explained=basis.explained
    )
    xyz = np.concatenate([project(basis, x[s : s + 65536]) for s in range(0, len(x), 65536)])
    np.save(dirpath / f"coords_{space}_pca2.npy", np.ascontiguousarray(xyz[:, :2]))
    np.save(dirpath / f"coords_{space}_pca3.npy", xyz)
    times["pca"] = time.perf_counter() - t0
    if options.umap:
        t0 = time.perf_counter()
        xy = umap_2d(
            x,
            seed=options.umap_seed,
            n_neighbors=options.umap_neighbors,
            min_dist=options.umap_min_dist,
            sample_cap=options.umap_sample_cap,
            labels=labels,
            timings=times,  # umap_fit, umap_transform
        )
        np.save(dirpath / f"coords_{space}_umap.npy", xy)
        times["umap"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    index, index_info = choose_index(
        x, target_recall=options.target_recall, exact_max=options.exact_max, kind=options.index_kind
    )
    write_index(index, dirpath / f"{space}.faiss")
    times["index"] = time.perf_counter() - t0
    if index_info["kind"] == "flat":
        index_info.pop(
            "build_s", None
        )  # timings_s has it; the rest of a flat store's manifest is reproducible
    return times, index_info


def _versions() -> dict[str, str]:

    out = {}
    for pkg in ("torch", "faiss-cpu", "umap-learn", "numpy", "pandas"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"

    out["engine"] = str(engine_version)
    return out


def write_manifest(
    dirpath: Path, source: dict[str, Any], info: dict[str, Any], options: StoreOptions
) -> dict:
    """Finish a built directory: manifest.json with every file's size and sha256, spaces, versions, options."""
    spaces = info["spaces"]
    dims = {}
    for s in spaces:
        arr = np.load(dirpath / f"{s}.npy", mmap_mode="r", allow_pickle=False)
        dims[s] = {"dim": int(arr.shape[1]), "dtype": str(arr.dtype)}
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(dirpath.iterdir())
        if p.is_file() and p.name != "manifest.json"
    }
    manifest = {
        "version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "n": int(info["n"]),
        "classes": list(info["classes"]),
        "spaces": {s: dims[s] for s in spaces},
        "options": {k: getattr(options, k) for k in options.__dataclass_fields__},
        "umap": {
            "seed": options.umap_seed,
            "n_neighbors": options.umap_neighbors,
            "min_dist": options.umap_min_dist,
            "sample_cap": options.umap_sample_cap,
            "metric": "cosine",
        },
        "timings_s": info.get("timings", {}),
        "index": info.get("index", {}),
        "versions": _versions(),
        "files": files,
    }
    atomic_write_json(dirpath / "manifest.json", manifest)
    return manifest


def finish_store(
    dirpath: Path,
    source: dict[str, Any],
    info: dict[str, Any],
    options: StoreOptions,
    progress: Progress | None = None,
) -> dict:
    """Derive projections and indexes for every written space, then write the manifest (returns it)."""
    labels = info.get("labels")
    timings: dict[str, float] = dict(info.get("timings", {}))
    indexes: dict[str, dict[str, Any]] = {}
    for i, space in enumerate(info["spaces"]):
        if progress:
            progress(0.6 + 0.35 * i / max(len(info["spaces"]), 1), f"projecting and indexing {space}")
        times, indexes[space] = derive_space(dirpath, space, options, labels)
        for stage, sec in times.items():
            timings[stage] = timings.get(stage, 0.0) + sec
    return write_manifest(dirpath, source, {**info, "timings": timings, "index": indexes}, options)


@dataclass(frozen=True)
class StoreArrays:
    """In-memory content of a small store (tests, fixtures); :mod:`engine.store.build` streams large ones instead."""

    embeddings: dict[str, np.ndarray]  # space -> [N, D]
    labels: np.ndarray  # int64 [N]
    classes: tuple[str, ...]
    images: np.ndarray  # uint8 [N, H, W, 3] (for thumbnails)
    meta: dict[str, np.ndarray] = field(default_factory=dict)


def write_store(
    path: str | Path,
    arrays: StoreArrays,
    source: dict[str, Any],
    options: StoreOptions = StoreOptions(),
    overwrite: bool = False,
) -> Path:
    """Write a complete store from arrays, atomically (temporary directory, then rename)."""

    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreError(f"store {path} already exists; pass --overwrite (overwrite=True) to rebuild it.")
    with atomic_dir(path, overwrite=True) as tmp:
        for space, x in arrays.embeddings.items():
            np.save(tmp / f"{space}.npy", np.ascontiguousarray(x, dtype=np.dtype(options.dtype)))
        write_meta(tmp, arrays.labels, arrays.meta)
        write_thumbs(tmp, arrays.images, options.thumb_size)
        info = {
            "spaces": list(arrays.embeddings),
            "n": len(arrays.labels),
            "classes": arrays.classes,
            "labels": arrays.labels,
        }
        finish_store(tmp, source, info, options)
    return path
