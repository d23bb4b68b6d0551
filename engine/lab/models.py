"""Checkpoints as the dashboard uses them: load a trained model (a failure carries the command that replaces it),
import another library's weights file as a checkpoint (engine.imports)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from torch import nn

from engine.core.errors import CheckpointError, ConfigError, EquiLabError
from engine.imports.convert import import_checkpoint
from engine.imports.registry import FORMATS
from engine.store.discovery import recorded_info
from engine.train.checkpoint import data_spec
from engine.train.checkpoint import load_model as _load_model

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a checkpoint stem "add a model" may write


def _text(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value else default


def train_command(checkpoint: Path) -> str:
    """The command that trains a replacement for ``checkpoint`` (its recorded method and dataset when readable)."""
    info = recorded_info(checkpoint)
    config = info.get("config") if isinstance(info.get("config"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    method = _text(info.get("method"), "<method>")
    dataset = _text(data.get("dataset"), "shapes")
    cmd = shlex.join(["python", "-m", "engine", "train", "--method", method, "--dataset", dataset])
    return f"{cmd} --out runs/<name>   # or restore {checkpoint}"


def load_model(checkpoint: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, sidecar info) of a checkpoint (engine.train.checkpoint.load_model).

    An EquiLabError without a ``fix`` gets :func:`train_command` as its fix.
    """
    try:
        return _load_model(checkpoint, device)
    except EquiLabError as e:
        if e.fix is None:
            e.fix = train_command(Path(checkpoint))
        raise


def trained_on(path: str | Path) -> str | None:
    """The dataset a checkpoint was trained on, from its sidecar (None when it records none)."""
    try:
        spec = data_spec(recorded_info(path))
    except CheckpointError:
        return None
    return None if spec is None else spec.name


def import_formats() -> dict[str, str]:
    """Format name -> one-line description, for the "add a model" panel (engine.imports.registry)."""
    return {name: mod.DESCRIPTION for name, mod in FORMATS.items()}


def import_into(
    source: str | Path,
    fmt: str,
    checkpoints_root: str | Path,
    name: str,
    arch: str | None = None,
    strict: bool = True,
    input_size: int | None = None,
) -> Path:
    """Import ``source`` as the checkpoint ``<checkpoints_root>/<name>`` (engine.imports.convert); returns the
    ``.safetensors`` path. ConfigError when ``name`` is not a plain file name or is taken."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise ConfigError(
            f"model name {str(name)[:80]!r}: use letters, digits, '.', '_' or '-' (at most 100, no leading '.')"
        )
    side = import_checkpoint(source, fmt, Path(checkpoints_root) / name, arch or None, strict, input_size)
    return side.with_suffix(".safetensors")
