"""Paths typed or chosen by a user resolve only inside the allowed roots (the dashboard's one door to files).

``..`` segments, absolute paths and symlinks are judged by where they finally point (``Path.resolve``), so a link
inside a root that leads outside it is refused like ``../../etc/passwd``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.core.errors import ConfigError

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: anything longer cannot name a real file


class UnsafePathError(ConfigError):
    """A user-supplied path is empty, malformed, or points outside the allowed roots."""


def is_inside(path: Path, root: Path) -> bool:
    """True when ``path`` (after following every symlink) is ``root`` or lies below it."""
    try:
        real, base = Path(path).resolve(), Path(root).resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        return False
    return real == base or real.is_relative_to(base)


def _describe(roots: Sequence[Path]) -> str:
    return ", ".join(str(r) for r in roots)


def resolve_inside(text: str, roots: Sequence[Path], anchors: Sequence[Path] = ()) -> Path:
    """The existing file or directory ``text`` names, resolved, if it lies inside one of ``roots``.

    Relative paths are tried against each root, then each extra anchor (e.g. the repository, so that
    ``runs/x`` works); absolute paths are taken as they are. Raises :class:`UnsafePathError` naming the value,
    the reason and the allowed roots otherwise.
    """
    if not isinstance(text, str) or not text.strip():
        raise UnsafePathError(
            f"empty path {text!r}; type a path inside the allowed roots ({_describe(roots)})."
        )
    if "\x00" in text:
        raise UnsafePathError(f"path {text!r} contains a NUL byte; refused.")
    if len(text) > MAX_PATH_CHARS:
        raise UnsafePathError(f"path of {len(text)} characters is longer than {MAX_PATH_CHARS}; refused.")
    bases = [Path(r).resolve() for r in roots]
    raw = Path(text)
    tries = [raw] if raw.is_absolute() else [Path(a) / raw for a in (*bases, *anchors)]
    missing_inside, escapes = False, False
    for t in tries:
        try:
            real = t.resolve()
        except (OSError, RuntimeError):  # symlink loop, name too long
            escapes = True
            continue
        inside = any(real == b or real.is_relative_to(b) for b in bases)
        if inside and real.exists():
            return real
        missing_inside |= inside
        escapes |= not inside and (raw.is_absolute() or t.exists() or ".." in raw.parts)
    if escapes or not missing_inside:
        raise UnsafePathError(
            f"path {text!r} points outside the allowed roots ({_describe(bases)}); "
            "refused: type a path inside one of them."
        )
    raise UnsafePathError(f"path {text!r} does not exist inside the allowed roots ({_describe(bases)}).")
