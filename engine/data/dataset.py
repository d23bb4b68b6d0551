"""The dataset record, data-root resolution and the on-disk array cache every loader shares."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.core import io
from engine.core.errors import DataError, EquiLabError

ROOT_ENV = "EQUILAB_DATA_ROOT"
ROOT_HINT = f"pass --data-root DIR (root= in Python) or set {ROOT_ENV}"
CACHE_SUBDIR = "data"


@dataclass(frozen=True)
class ImageDataset:
    """Images with labels and per-item metadata columns.

    Attributes:
        name: registry name (``shapes``, ``cifar10``, ...).
        split: ``train``, ``test`` or ``unlabeled``.
        images: uint8 ``[N, H, W, 3]``; often a read-only ``np.memmap`` of the on-disk cache.
        labels: int64 ``[N]`` class indices into ``classes`` (-1 where there is no label).
        classes: class names.
        meta: per-item columns of length N (``shapes`` factors; ``path`` for folder datasets).
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[3] != 3:
            raise DataError(
                f"{self.name}/{self.split}: images must be uint8 [N, H, W, 3], got "
                f"{self.images.dtype} {self.images.shape}."
            )
        if self.labels.shape != (n,):
            raise DataError(f"{self.name}/{self.split}: {n} images but labels of shape {self.labels.shape}.")
        bad = {k: len(v) for k, v in self.meta.items() if len(v) != n}
        if bad:
            raise DataError(f"{self.name}/{self.split}: meta columns {bad} do not have {n} rows.")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def class_counts(self) -> dict[str, int]:
        """Number of items per class name (unlabeled items are not counted)."""
        counts = np.bincount(self.labels[self.labels >= 0], minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, counts)}


def resolve_root(name: str, root: str | Path | None, fallback: Path | None = None) -> Path:
    """The data root: ``root``, else ``$EQUILAB_DATA_ROOT``, else ``fallback`` when it exists."""
    if root is None or str(root) == "":
        env = os.environ.get(ROOT_ENV, "")
        if env:
            root = env
        elif fallback is not None and fallback.is_dir():
            root = fallback
        else:
            raise DataError(f"{name} needs a data root: {ROOT_HINT}.")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DataError(f"{name}: data root {path} does not exist or is not a folder; {ROOT_HINT}.")
    return path


def cache_key(parts: dict) -> str:
    """Stable short hash of JSON-able key parts (dataset, split, version, seed, fingerprint, ...)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


@dataclass(frozen=True)
class Arrays:
    """What a loader builds and the cache stores: images, labels and meta columns."""

    images: np.ndarray
    labels: np.ndarray
    meta: dict[str, np.ndarray] = field(default_factory=dict)


def cache_path(name: str, split: str, parts: dict) -> Path:
    """Folder of one cache entry under ``engine.core.io.cache_dir()``."""
    return (
        io.cache_dir() / CACHE_SUBDIR / f"{name}-{split}-{cache_key({'name': name, 'split': split, **parts})}"
    )


def _read_entry(path: Path) -> Arrays:
    images = np.load(path / "images.npy", mmap_mode="r", allow_pickle=False)
    with np.load(path / "columns.npz", allow_pickle=False) as z:
        cols = {k: z[k] for k in z.files}
    labels = cols.pop("__labels__").astype(np.int64, copy=False)
    return Arrays(images=images, labels=labels, meta=cols)


def _write_entry(path: Path, arrays: Arrays) -> None:
    try:
        with io.atomic_dir(path) as tmp:
            np.save(tmp / "images.npy", np.ascontiguousarray(arrays.images, dtype=np.uint8))
            np.savez(tmp / "columns.npz", __labels__=arrays.labels.astype(np.int64), **arrays.meta)
    except EquiLabError:
        if not (path / "columns.npz").is_file():  # a concurrent writer winning the rename is fine
            raise


def cached(name: str, split: str, parts: dict, build: Callable[[], Arrays]) -> tuple[Arrays, Path]:
    """Load the cache entry for (name, split, parts), building and storing it first on a miss.

    Images come back as a read-only memory map, so later runs and epochs never decode or generate again.
    """
    path = cache_path(name, split, parts)
    if not (path / "columns.npz").is_file():
        _write_entry(path, build())
    try:
        return _read_entry(path), path
    except (OSError, ValueError, KeyError) as e:
        raise DataError(
            f"cache entry {path} is damaged ({type(e).__name__}: {e}); delete that folder and load again."
        ) from e
