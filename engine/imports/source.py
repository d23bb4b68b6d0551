"""Reading a foreign weights file without running it: safetensors, or ``torch.load(weights_only=True)``.

A file that needs full unpickling (it stores Python objects, not only tensors and plain containers) is refused
with the reason and the conversion to do where the file is trusted; nothing in it is ever executed.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from engine.core.errors import CheckpointError

CONVERT = (
    "convert it where you trust it: `sd = torch.load(F, weights_only=False)` (take its state dict, e.g. "
    "sd['state_dict']), then `safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, "
    "'model.safetensors')`, and import the .safetensors"
)


def _is_torch_file(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:1] == b"\x80" or head == b"PK\x03\x04" or zipfile.is_zipfile(path)


def read_source(path: str | Path) -> Any:
    """The file's content: a ``{name: tensor}`` dict (safetensors) or the plain container ``torch.load`` gives."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p} is not a file")
    if _is_torch_file(p):
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            why = str(e).strip().splitlines()
            detail = next((w for w in why if "GLOBAL" in w or "Unsupported" in w), why[0] if why else "")
            raise CheckpointError(
                f"{p} needs full unpickling ({detail.strip()[:200]}): it stores Python objects, and unpickling "
                f"them can run arbitrary code, so EquiLab refuses it; {CONVERT}"
            ) from e
        except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"{p} is not a readable torch file (truncated or damaged?): {e}") from e
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{p} is neither a safetensors file nor a torch.save file (truncated or damaged?): {e}"
        ) from e


def tensor_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """``obj`` as a flat ``{name: tensor}`` (non-tensor entries dropped); CheckpointError when it holds none."""
    if isinstance(obj, Mapping):
        out = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if out:
            return out
    raise CheckpointError(f"{where} holds no tensors (a state dict {{name: tensor}} was expected)")


def state_dict_of(
    obj: Any, where: str, keys: tuple[str, ...] = ("state_dict", "model")
) -> dict[str, torch.Tensor]:
    """The state dict inside a container: ``obj[key]`` for the first of ``keys`` present, else ``obj`` itself."""
    if isinstance(obj, Mapping):
        for k in keys:
            if k in obj:
                return tensor_dict(obj[k], f"{where}[{k!r}]")
    return tensor_dict(obj, where)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` with ``prefix`` removed from keys that have it (DDP's ``module.``); others unchanged."""
    return {k.removeprefix(prefix): v for k, v in state.items()}
