"""The one rule that turns a device setting (``auto`` | ``cpu`` | ``cuda[:N]``) into a ``torch.device``."""

from __future__ import annotations

import torch

from engine.core.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ConfigError for CUDA on a machine without it or an unknown name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use cpu or auto")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda") from e
