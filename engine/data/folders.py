"""Folder-backed datasets: ``imagefolder`` (``<root>/<split>/<class>/*.jpg`` or ``<root>/<class>/*.jpg``) and
the CIFAR-10 JPEG copy (``train/<class>/NNNN.jpg``, ``test/<class>/NNNN.jpg``).

Every file goes through the safe :func:`engine.data.images.decode_image`, is centre-cropped and resized to a
square, and the decoded split is cached as one uint8 array keyed on the folder's path and a fingerprint of its
file list (names, sizes, mtimes): editing, adding or removing a file rebuilds the cache, nothing else does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.core.errors import ConfigError, DataError
from engine.data.dataset import Arrays, ImageDataset, cached, resolve_root
from engine.data.images import decode_image, to_square

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
FOLDER_VERSION = 1  # bump when decoding/resizing changes, so old caches are not reused
MAX_REPORTED = 5


@dataclass(frozen=True)
class FileList:
    """Image files of one split: paths relative to ``base``, their class indices, and a fingerprint."""

    base: Path
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    labels: np.ndarray
    fingerprint: str


def _visible_dirs(path: Path) -> list[os.DirEntry]:
    return sorted(
        (e for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name
    )


def scan_classes(base: Path, classes: tuple[str, ...] | None = None) -> FileList:
    """List ``base/<class>/<image>`` files, sorted, with a cheap fingerprint (names, sizes, mtimes).

    Args:
        base: a folder of class sub-folders.
        classes: expected class names in label order; default the sorted sub-folder names.
    """
    if not base.is_dir():
        raise DataError(f"{base} does not exist or is not a folder; check --data-root.")
    found = [e.name for e in _visible_dirs(base)]
    if not found:
        raise DataError(
            f"{base} has no class sub-folders; expected <root>/<class>/<image> "
            "(for example cat/0001.jpg, dog/0002.jpg)."
        )
    if classes is None:
        classes = tuple(found)
    missing = [c for c in classes if c not in found]
    if missing:
        raise DataError(f"{base} lacks the class folders {missing}; found {found}.")
    digest = hashlib.sha256()
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        entries = sorted(
            (e for e in os.scandir(base / name) if e.is_file() and not e.name.startswith(".")),
            key=lambda e: e.name,
        )
        for e in entries:
            if Path(e.name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            st = e.stat()
            rel = f"{name}/{e.name}"
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            paths.append(rel)
            labels.append(label)
    if not paths:
        raise DataError(
            f"{base} has class folders {list(classes)} but no image files "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or pick another folder."
        )
    return FileList(base, tuple(classes), tuple(paths), np.asarray(labels, np.int64), digest.hexdigest())


def _decode_one(path: Path, size: int) -> np.ndarray | DataError:
    try:
        return to_square(decode_image(path), size)
    except DataError as e:  # collected, so one bad file reports with the others instead of alone
        return e


def decode_files(files: FileList, size: int, workers: int | None = None) -> np.ndarray:
    """Decode every listed file to uint8 ``[N, size, size, 3]``; DataError names the unreadable files."""
    workers = workers or min(8, (os.cpu_count() or 1) + 2)  # PIL releases the GIL while decoding
    start = time.perf_counter()
    out = np.empty((len(files.paths), size, size, 3), np.uint8)
    bad: list[str] = []
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda p: _decode_one(files.base / p, size), files.paths)
        for i, r in enumerate(results):
            if isinstance(r, DataError):
                bad.append(str(r).rstrip("."))
            else:
                out[i] = r
    if bad:
        more = f" (and {len(bad) - MAX_REPORTED} more)" if len(bad) > MAX_REPORTED else ""
        raise DataError(
            f"{len(bad)} of {len(files.paths)} images under {files.base} cannot be decoded{more}: "
            + "; ".join(bad[:MAX_REPORTED])
            + ". Remove or replace these files."
        )
    log.info("decoded %d images from %s in %.1f s", len(out), files.base, time.perf_counter() - start)
    return out


def load_files(name: str, split: str, files: FileList, size: int) -> ImageDataset:
    """Decode (or load from cache) a scanned split as an :class:`ImageDataset` with a ``path`` column."""
    parts = {"version": FOLDER_VERSION, "base": str(files.base), "files": files.fingerprint, "size": size}

    def build() -> Arrays:
        paths = np.asarray(files.paths, dtype=np.str_)
        return Arrays(images=decode_files(files, size), labels=files.labels, meta={"path": paths})

    arrays, _ = cached(name, split, parts, build)
    return ImageDataset(name, split, arrays.images, arrays.labels, files.classes, arrays.meta)


def check_image_size(image_size: object) -> int:
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int | np.integer)
        or not 1 <= image_size <= 1024
    ):
        raise ConfigError(f"image_size={image_size!r} must be an integer number of pixels in 1..1024.")
    return int(image_size)


def load_imagefolder(
    split: str = "train", root: str | Path | None = None, *, image_size: int = 32
) -> ImageDataset:
    """Any folder of class sub-folders, images centre-cropped and resized to ``image_size``.

    Reads ``<root>/<split>/<class>/*`` when ``<root>/<split>`` exists, else ``<root>/<class>/*`` as split
    ``train``. ``meta["path"]`` holds each image's path relative to the split folder.
    """

    size = check_image_size(image_size)
    if not split or split in {".", ".."} or Path(split).name != split:
        raise ConfigError(
            f"imagefolder split {split!r} must be a plain sub-folder name such as 'train' or 'test'."
        )
    base = resolve_root("imagefolder", root)
    if (base / split).is_dir():
        base = base / split
    elif split != "train":
        raise DataError(
            f"{base} has no {split!r} sub-folder; its class folders are read as split 'train' "
            f"(or create {base / split}/<class>/...)."
        )
    return load_files("imagefolder", split, scan_classes(base), size)
