"""Filesystem helpers shared by checkpoints, stores and caches: cache location and atomic writes.

Every file the engine writes goes through :func:`atomic_write` or :func:`atomic_dir`, so a killed process
or a full disk never leaves a half-written file where a reader would find it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.errors import EquiLabError, WriteError

REPO_ROOT = Path(__file__).resolve().parents[2]
FILE_MODE, DIR_MODE = 0o644, 0o755
# What to tell the user per errno (the kernel's own words alone do not say what to do).
_WRITE_HINTS: dict[int, str] = {
    errno.ENOSPC: "the disk is full (no space left on device); free some space or choose another output directory",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another output directory",
    errno.EFBIG: "file too large for the file system or the process's file-size limit (ulimit -f); "
    "free space, raise the limit or choose another output directory",
    errno.EROFS: "the file system is read-only; choose a writable output directory",
    errno.EACCES: "permission denied; make the directory writable or choose another output directory",
    errno.EPERM: "operation not permitted; make the directory writable or choose another output directory",
}


def cache_dir() -> Path:
    """Directory for generated datasets and decoded caches: ``$EQUILAB_CACHE`` or ``~/.cache/equilab``."""
    root = Path(os.environ.get("EQUILAB_CACHE") or Path.home() / ".cache" / "equilab")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _errno_of(e: BaseException) -> int | None:
    """The errno behind ``e``: an ``OSError``'s own, or one a library quotes in its message (safetensors says
    "(os error 28)", FAISS "(No space left on device)")."""
    if isinstance(e, OSError) and e.errno:
        return e.errno
    text = str(e)
    if m := re.search(r"os error (\d+)", text):
        return int(m.group(1))
    return next((c for c in _WRITE_HINTS if os.strerror(c) in text), None)


def _is_write_failure(e: BaseException) -> bool:
    return isinstance(e, OSError) or _errno_of(e) in _WRITE_HINTS


def write_error(path: str | Path, e: BaseException) -> WriteError:
    """A :class:`WriteError` naming ``path`` and saying what went wrong (disk full, file too large, read-only ...)."""
    reason = _WRITE_HINTS.get(_errno_of(e)) or (
        f"{getattr(e, 'strerror', None) or e}; check that the directory is writable and has free space"
    )
    return WriteError(f"cannot write {path}: {reason}. Nothing was changed.")


def open_memmap(path: str | Path, dtype: Any, shape: tuple[int, ...]) -> Any:
    """``np.lib.format.open_memmap(path, "w+")`` with the file's blocks reserved up front.

    A memmap over a sparse file on a full disk dies with SIGBUS on the first page it cannot back; reserving
    the blocks turns that into an ``OSError`` (ENOSPC/EFBIG) here, which the atomic helpers report cleanly.
    """

    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=shape)
    with open(path, "rb+") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            os.posix_fallocate(f.fileno(), 0, size)
    return arr


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


Stage = Callable[[str | Path, Callable[[Path], Any]], Path]


@contextlib.contextmanager
def atomic_files() -> Iterator[Stage]:
    """Write several files all-or-nothing: ``stage(path, write)`` writes a temporary beside ``path`` (returned,
    e.g. to hash it); when the block succeeds every temporary is renamed to its path, in staging order.

    A failure while staging (disk full, read-only, an exception) removes every temporary and renames nothing,
    so files written earlier stay exactly as they were. Usage::

        with atomic_files() as stage:
            tmp = stage(weights, lambda p: save_file(tensors, str(p)))
            stage(sidecar, lambda p: p.write_text(describe(sha256_file(tmp))))
    """
    staged: list[tuple[Path, Path]] = []

    def stage(path: str | Path, write: Callable[[Path], Any]) -> Path:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
        except OSError as e:
            raise write_error(path, e) from e
        tmp_path = Path(tmp)
        staged.append((tmp_path, path))
        try:
            write(tmp_path)
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp_path, FILE_MODE)  # mkstemp creates 0600; the result is an ordinary readable file
        except Exception as e:
            if _is_write_failure(e):
                raise write_error(path, e) from e
            raise
        return tmp_path

    try:
        yield stage
        for tmp_path, path in staged:
            try:
                os.replace(tmp_path, path)
            except OSError as e:
                raise write_error(path, e) from e
        for parent in dict.fromkeys(path.parent for _, path in staged):
            _fsync_dir(parent)
    finally:
        for tmp_path, _ in staged:
            tmp_path.unlink(missing_ok=True)  # no-op for the renamed ones


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` by calling ``write(tmp_path)`` on a temporary file beside it, then renaming.

    The rename is atomic on POSIX, so readers see either the old file or the complete new one.
    On any error (disk full, permission, interrupt) the temporary file is removed and the old file is kept;
    OS errors become a :class:`WriteError` naming ``path`` and the cause.
    """
    with atomic_files() as stage:
        stage(path, write)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it to ``path`` only when the block succeeds.

    Usage::

        with atomic_dir(out) as tmp:
            np.save(tmp / "x.npy", x)
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise EquiLabError(f"{path} already exists; remove it or pass overwrite=True.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise write_error(path, e) from e
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)  # mkdtemp creates 0700
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_write_failure(e):
            raise write_error(path, e) from e
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
