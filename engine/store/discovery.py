"""Finding checkpoints and stores on disk, and the command that (re)builds a store: pure functions of root paths.

A checkpoint is a ``.safetensors`` file beside its ``.json`` sidecar; a store is a directory holding a
``manifest.json`` (engine.store.format). Files reached through a symlink that points outside their root are never
offered or read: a root may hold a link, but only what really lives inside it counts.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.core.errors import EquiLabError
from engine.core.paths import is_inside
from engine.store.build import store_path

# Roots searched for checkpoints, in the order their labels are offered; "checkpoints" holds flat files.
CHECKPOINT_KINDS = ("checkpoints", "runs", "stores")


def find_checkpoints(roots: Mapping[str, Path]) -> dict[str, Path]:
    """label -> ``.safetensors`` path of every checkpoint with a sidecar under ``roots`` (kind -> directory).

    ``roots["checkpoints"]`` is searched flat and labelled by file stem; ``runs`` and ``stores`` recursively,
    labelled ``<kind>/<relative path without suffix>``. The first root holding a label wins.
    """
    found: dict[str, Path] = {}
    for kind in CHECKPOINT_KINDS:
        base = roots.get(kind)
        if base is None or not base.is_dir():
            continue
        pattern = "*.safetensors" if kind == "checkpoints" else "**/*.safetensors"
        for p in sorted(base.glob(pattern)):
            side = p.with_suffix(".json")
            if side.exists() and is_inside(p, base) and is_inside(side, base):
                label = p.stem if kind == "checkpoints" else f"{kind}/{p.relative_to(base).with_suffix('')}"
                found.setdefault(label, p)
    return found


def _json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} when the file is missing, unreadable or not an object."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def recorded_info(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's sidecar as written, unvalidated ({} if unreadable): for labels and commands only.

    Loading a model validates the sidecar (engine.lab.models.load_model); this never raises.
    """
    return _json(Path(checkpoint).with_suffix(".json"))


def recorded_sha(checkpoint: Path) -> str | None:
    """The weights' sha256 recorded in the checkpoint's sidecar, or None."""
    weights = recorded_info(checkpoint).get("weights")
    sha = weights.get("sha256") if isinstance(weights, dict) else None
    return sha if isinstance(sha, str) else None


def canonical_store(checkpoint: Path, dataset: str, split: str, stores_root: Path) -> Path | None:
    """Where ``python -m engine embed --out <stores_root>`` writes this store (None if the checkpoint is unreadable)."""
    try:
        return store_path(checkpoint, dataset, split, stores_root)
    except (EquiLabError, OSError, KeyError, TypeError):
        return None


def find_store(checkpoint: Path, dataset: str, split: str, stores_root: Path) -> Path | None:
    """A store under ``stores_root`` built from ``checkpoint`` (same path or weights sha256) on dataset/split.

    The path :func:`embed_command` writes comes first, so running the command shown for a damaged store fixes it
    wherever the damaged one lies; then stores of the dataset's default variant (no ``--data-option``), then any
    other variant (e.g. a 1M-item ``shapes`` store alone in its folder); manifests reached through a symlink
    pointing outside the root are ignored.
    """
    sha = recorded_sha(checkpoint)
    base = Path(stores_root)
    canon = canonical_store(checkpoint, dataset, split, base)
    found = sorted([*base.glob("*/manifest.json"), *base.glob("*/*/manifest.json")])
    if canon is not None and (canon / "manifest.json") in found:
        found.insert(0, canon / "manifest.json")
    matches = []
    for manifest in found:
        if not is_inside(manifest, base):
            continue
        src = _json(manifest).get("source")
        if not isinstance(src, dict):
            continue
        same_ckpt = (sha and src.get("checkpoint_sha256") == sha) or src.get("checkpoint") == str(checkpoint)
        if same_ckpt and src.get("dataset") == dataset and src.get("split") == split:
            if manifest.parent == canon or not src.get("dataset_options"):
                return manifest.parent
            matches.append(manifest.parent)
    return matches[0] if matches else None


def embed_command(checkpoint: Path, dataset: str, split: str, stores_root: Path) -> str:
    """The shell command that (re)builds the store :func:`find_store` reads first for (checkpoint, dataset, split)."""
    args = ["python", "-m", "engine", "embed", "--checkpoint", str(checkpoint), "--dataset", dataset]
    args += ["--split", split, "--out", str(stores_root), "--overwrite"]
    return shlex.join(args)


# ---------------------------------------------------------------- imported models (engine.imports)

# the folder "add a model" reads foreign weights files from (default imports/)
IMPORTS_ENV = "EQUILAB_IMPORTS"
IMPORTABLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
MAX_IMPORTABLE = 500  # files offered at most (a huge runs/ folder must not stall the page)


def imported_format(checkpoint: Path) -> str | None:
    """The source format of an imported checkpoint (its sidecar's ``imported.format``), None for EquiLab's own."""
    info = recorded_info(checkpoint)
    if info.get("method") != "imported":
        return None
    imported = info.get("imported")
    fmt = imported.get("format") if isinstance(imported, dict) else None
    return fmt if isinstance(fmt, str) and fmt else "unknown format"


def model_label(label: str, checkpoint: Path) -> str:
    """How the model picker shows ``label``: imported models as ``"<label> (imported: <format>)"``."""
    fmt = imported_format(checkpoint)
    return label if fmt is None else f"{label} (imported: {fmt})"


def imports_root(repo: Path) -> Path:
    """The imports folder: ``$EQUILAB_IMPORTS``, else ``<repo>/imports``."""
    return Path(os.environ.get(IMPORTS_ENV) or Path(repo) / "imports").resolve()


def find_importable(roots: Mapping[str, Path]) -> dict[str, Path]:
    """``"<kind>/<relative path>"`` -> path of every weights file under ``roots`` (kind -> directory) that could be
    imported: suffix in IMPORTABLE_SUFFIXES, really inside its root, not already an EquiLab checkpoint (a
    ``.safetensors`` beside a ``.json`` sidecar). At most MAX_IMPORTABLE files, in root then path order."""
    found: dict[str, Path] = {}
    for kind, base in roots.items():
        base = Path(base)
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if len(found) >= MAX_IMPORTABLE:
                return found
            if p.suffix.lower() not in IMPORTABLE_SUFFIXES or not p.is_file() or not is_inside(p, base):
                continue
            if p.suffix == ".safetensors" and p.with_suffix(".json").exists():
                continue
            found.setdefault(f"{kind}/{p.relative_to(base)}", p)
    return found
