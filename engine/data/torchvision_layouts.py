"""CIFAR-10, CIFAR-100 and STL-10 in the layouts torchvision downloads (``download=False``: nothing is fetched).

* ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (or ``<root>`` itself);
* ``<root>/cifar-100-python/{train, test, meta}``;
* ``<root>/stl10_binary/{train,test,unlabeled}_X.bin, {train,test}_y.bin, class_names.txt``.

CIFAR batches are Python pickles; they are read with a restricted unpickler that can only build numpy arrays,
lists, dicts, strings and numbers (any other global is refused), never with a bare ``pickle.load``. The decoded
arrays are cached like the JPEG datasets. ``cifar10`` also reads the JPEG copy (``train/<class>/NNNN.jpg``); the
layout is detected from what the root holds.
"""

from __future__ import annotations

import codecs
import hashlib
import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np

from engine.core.errors import ConfigError, DataError
from engine.core.io import REPO_ROOT
from engine.data.dataset import Arrays, ImageDataset, cached, resolve_root
from engine.data.folders import load_files, scan_classes

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_JPEG_FALLBACK = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg"
PICKLE_VERSION = 1
STL_SIDE = 96
STL_SPLITS = ("train", "test", "unlabeled")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers only: a hostile pickle cannot name any other callable."""

    ALLOWED: ClassVar[dict[tuple[str, str], object]] = {
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("_codecs", "encode"):  # protocol-2 pickles spell bytes this way
            return codecs.encode
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def read_batch(path: Path) -> dict:
    """One CIFAR batch/meta pickle as a dict with str keys (files from Python 2 decode as latin-1)."""
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnlyUnpickler(f, encoding="latin1").load()
    except FileNotFoundError as e:
        raise DataError(f"{path} is missing; the CIFAR folder is incomplete, re-extract the archive.") from e
    except Exception as e:  # UnpicklingError, EOFError, ... : a damaged or foreign file
        raise DataError(f"{path} is not a readable CIFAR batch ({type(e).__name__}: {e}).") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict.")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _batches_to_arrays(paths: list[Path], label_key: str, extra: dict[str, str]) -> Arrays:
    """Concatenate CIFAR batches: data [n, 3072] channel-major rows -> uint8 [n, 32, 32, 3]."""
    batches = [read_batch(p) for p in paths]
    try:
        data = np.concatenate([np.asarray(b["data"], np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(b[label_key], np.int64) for b in batches])
        meta = {
            col: np.concatenate([np.asarray(b[key], np.int64) for b in batches]) for col, key in extra.items()
        }
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except (KeyError, ValueError) as e:
        raise DataError(
            f"CIFAR batches {[str(p) for p in paths]} do not have the expected fields ({e})."
        ) from e
    return Arrays(images=np.ascontiguousarray(images), labels=labels, meta=meta)


def _pickle_dataset(name: str, split: str, folder: Path, spec: dict) -> ImageDataset:
    if split not in spec["files"]:
        raise ConfigError(f"{name} has no split {split!r}; choose from {sorted(spec['files'])}.")
    paths = [folder / f for f in spec["files"][split]]
    missing = [str(p) for p in [*paths, folder / spec["meta_file"]] if not p.is_file()]
    if missing:
        raise DataError(f"{name}: missing {missing}; re-extract the official archive into {folder.parent}.")
    classes = tuple(str(c) for c in read_batch(folder / spec["meta_file"])[spec["names_key"]])
    parts = {"version": PICKLE_VERSION, "folder": str(folder), "files": _fingerprint(paths)}
    arrays, _ = cached(
        name, split, parts, lambda: _batches_to_arrays(paths, spec["label_key"], spec["extra"])
    )
    return ImageDataset(name, split, arrays.images, arrays.labels, classes, arrays.meta)


CIFAR10_PICKLE = {
    "files": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "meta_file": "batches.meta",
    "names_key": "label_names",
    "label_key": "labels",
    "extra": {},
}
CIFAR100_PICKLE = {
    "files": {"train": ["train"], "test": ["test"]},
    "meta_file": "meta",
    "names_key": "fine_label_names",
    "label_key": "fine_labels",
    "extra": {"coarse_label": "coarse_labels"},
}


def _find(root: Path, marker: str, subdirs: tuple[str, ...]) -> Path | None:
    """The first of ``root/<subdir>`` (or ``root``) that contains ``marker``."""
    for d in (*(root / s for s in subdirs), root):
        if (d / marker).exists():
            return d
    return None


def load_cifar10(split: str = "train", root: str | Path | None = None) -> ImageDataset:
    """CIFAR-10 from the JPEG copy (``<root>/<split>/<class>/*.jpg``) or the official pickle batches.

    The root is ``root``, else ``$EQUILAB_DATA_ROOT``, else ``../shared/data/cifar10-jpeg`` beside the repository.
    """
    if split not in CIFAR10_PICKLE["files"]:
        raise ConfigError(f"cifar10 has no split {split!r}; choose from ['test', 'train'].")
    base = resolve_root("cifar10", root, fallback=CIFAR10_JPEG_FALLBACK)
    pickled = _find(base, "data_batch_1", ("cifar-10-batches-py",))
    if pickled is not None:
        return _pickle_dataset("cifar10", split, pickled, CIFAR10_PICKLE)
    jpeg = _find(base, split, ("cifar10-jpeg",))
    if jpeg is not None:
        return load_files("cifar10", split, scan_classes(jpeg / split, CIFAR10_CLASSES), 32)
    raise DataError(
        f"{base} holds neither CIFAR-10 layout: expected cifar-10-batches-py/data_batch_1 (torchvision) or "
        f"{split}/<class>/*.jpg (JPEG copy); pass --data-root DIR pointing at one of them."
    )


def load_cifar100(split: str = "train", root: str | Path | None = None) -> ImageDataset:
    """CIFAR-100 (fine labels; ``meta["coarse_label"]`` holds the 20 superclasses) from the torchvision layout."""
    if split not in CIFAR100_PICKLE["files"]:
        raise ConfigError(f"cifar100 has no split {split!r}; choose from ['test', 'train'].")
    base = resolve_root("cifar100", root)
    folder = _find(base, "meta", ("cifar-100-python",))
    if folder is None or not (folder / "train").is_file():
        raise DataError(
            f"{base} has no cifar-100-python/{{train,test,meta}}; pass --data-root DIR holding it."
        )
    return _pickle_dataset("cifar100", split, folder, CIFAR100_PICKLE)


def _stl_images(path: Path) -> np.ndarray:
    """``*_X.bin`` as a read-only ``[N, 96, 96, 3]`` view (the file stores each channel column-major)."""
    n, rem = divmod(path.stat().st_size, 3 * STL_SIDE * STL_SIDE)
    if rem or n == 0:
        raise DataError(f"{path}: {path.stat().st_size} bytes is not a whole number of 96x96 RGB images.")
    raw = np.memmap(path, np.uint8, mode="r", shape=(n, 3, STL_SIDE, STL_SIDE))  # [N, C, W, H]
    return raw.transpose(0, 3, 2, 1)  # [N, H, W, C] without copying


def load_stl10(split: str = "train", root: str | Path | None = None) -> ImageDataset:
    """STL-10 at 96x96 from ``stl10_binary``; ``unlabeled`` has label -1.

    ``train``/``test`` are cached as contiguous arrays; the 100k-image ``unlabeled`` split is a strided
    memory map of the original file (no 2.7 GB copy).
    """
    if split not in STL_SPLITS:
        raise ConfigError(f"stl10 has no split {split!r}; choose from {list(STL_SPLITS)}.")
    base = resolve_root("stl10", root)
    folder = _find(base, "class_names.txt", ("stl10_binary",))
    x_path = folder / f"{split}_X.bin" if folder else None
    if x_path is None or not x_path.is_file():
        raise DataError(
            f"{base} has no stl10_binary/{split}_X.bin; pass --data-root DIR holding stl10_binary."
        )
    classes = tuple(
        line.strip() for line in (folder / "class_names.txt").read_text().splitlines() if line.strip()
    )
    images = _stl_images(x_path)
    if split == "unlabeled":
        return ImageDataset("stl10", split, images, np.full(len(images), -1, np.int64), classes, {})
    y_path = folder / f"{split}_y.bin"
    if not y_path.is_file():
        raise DataError(f"{y_path} is missing; re-extract stl10_binary.")
    labels = np.fromfile(y_path, np.uint8).astype(np.int64) - 1  # the file counts classes from 1
    if len(labels) != len(images):
        raise DataError(f"{y_path} has {len(labels)} labels for {len(images)} images in {x_path}.")
    parts = {"version": PICKLE_VERSION, "folder": str(folder), "files": _fingerprint([x_path, y_path])}
    arrays, _ = cached(
        "stl10", split, parts, lambda: Arrays(images=np.ascontiguousarray(images), labels=labels)
    )
    return ImageDataset("stl10", split, arrays.images, arrays.labels, classes, arrays.meta)
