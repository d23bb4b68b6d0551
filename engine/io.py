"""Filesystem helpers shared by checkpoints, stores and caches: cache location and atomic writes.

Every file the engine writes goes through :func:`atomic_write` or :func:`atomic_dir`, so a killed process
or a full disk never leaves a half-written file where a reader would find it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.errors import EquiLabError

REPO_ROOT = Path(__file__).resolve().parent.parent
FILE_MODE, DIR_MODE = 0o644, 0o755


def cache_dir() -> Path:
    """Directory for generated datasets and decoded caches: ``$EQUILAB_CACHE`` or ``~/.cache/equilab``."""
    root = Path(os.environ.get("EQUILAB_CACHE") or Path.home() / ".cache" / "equilab")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` by calling ``write(tmp_path)`` on a temporary file beside it, then renaming.

    The rename is atomic on POSIX, so readers see either the old file or the complete new one.
    On any error (disk full, permission, interrupt) the temporary file is removed and the old file is kept.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise EquiLabError(
            f"cannot write {path}: {e.strerror or e}. Check that the directory is writable."
        ) from e
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, FILE_MODE)  # mkstemp creates 0600; the result is an ordinary readable file
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise EquiLabError(f"cannot write {path}: {e.strerror or e}; nothing was changed.") from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


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
        raise EquiLabError(
            f"cannot create {path}: {e.strerror or e}. Check that the directory is writable."
        ) from e
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
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EquiLabError(f"cannot write {path}: {e.strerror or e}; nothing was changed.") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
