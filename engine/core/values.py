"""Allowed values of every setting a user writes: one table of inclusive ranges and one coercion function.

Keys are the user-facing dotted config keys (``optim.lr``, ``model.width``); method hyper-parameters are
``model.options.<name>`` (``engine.methods`` validates its options against the same table, without importing
the trainer). A number whose key is not listed must be finite and >= 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from engine.core.errors import ConfigError

HIDDEN_MAX = 65536  # largest MLP layer size

RANGES: dict[str, tuple[float, float]] = {
    "model.width": (0.03, 4.0),  # ResNet channel multiplier
    "model.image_size": (0, 1024),  # 0 = the dataset's image side
    "optim.lr": (1e-8, 100.0),
    "optim.momentum": (0.0, 0.999),
    "optim.weight_decay": (0.0, 1.0),
    "optim.warmup_epochs": (0.0, 1e6),
    "optim.epochs": (1, 1e6),
    "optim.batch_size": (1, 1 << 20),
    "optim.final_lr_ratio": (0.0, 1.0),
    "train.knn_k": (1, 1 << 20),
    "train.knn_t": (1e-4, 100.0),
    "train.log_every": (1, 1 << 30),
    "train.checkpoint_every": (0, 1 << 30),
    "train.knn_every": (0, 1 << 30),
    "data.train_subset": (0, 1 << 40),
    "data.knn_bank": (1, 1 << 40),
    "data.knn_queries": (1, 1 << 40),
    # method hyper-parameters (the same key in every method that has it)
    "model.options.temperature": (1e-3, 10.0),
    "model.options.temperature_y": (1e-3, 10.0),
    "model.options.proj_dim": (1, HIDDEN_MAX),
    "model.options.y_dim": (1, HIDDEN_MAX),
    "model.options.p_embed_dim": (1, HIDDEN_MAX),
    "model.options.ef_dim": (1, HIDDEN_MAX),
    "model.options.lr_scale": (1e-3, 1e3),
    "model.options.rot_weight": (0.0, 100.0),
    "model.options.equi_weight": (0.0, 100.0),
    "model.options.sep_weight": (0.0, 100.0),
    "model.options.reg_weight": (0.0, 100.0),
    "model.options.rot_view_scale": (0.125, 1.0),
    "model.options.split": (0.05, 0.95),
}


def option_key(name: str) -> str:
    """The table key of method hyper-parameter ``name``."""
    return f"model.options.{name}"


def coerce(
    key: str,
    value: Any,
    default: Any,
    *,
    where: str | None = None,
    choices: Iterable[str] | None = None,
    nullable: bool = False,
) -> Any:
    """``value`` converted to the kind of ``default`` and checked, or ConfigError naming ``where`` (the key).

    ``choices``: the allowed strings. Otherwise by ``default``'s kind: a mapping; true/false; a tuple of MLP
    layer sizes (an int is one layer); an integer or a finite float inside ``RANGES[key]``; else a string.
    ``nullable`` also accepts None.
    """
    where = where or key
    if choices is not None:
        allowed = list(choices)
        if value not in allowed:
            raise ConfigError(f"{where}={value!r} is not allowed; choose from {allowed}")
        return value
    if nullable and value is None:
        return None
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, tuple):
        if isinstance(value, int) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= HIDDEN_MAX for v in value
        ):
            raise ConfigError(
                f"{where} must be a list of layer sizes (integers in [1, {HIDDEN_MAX}]), got {value!r}"
            )
        return tuple(value)
    if isinstance(default, int | float):
        return _number(key, where, value, isinstance(default, int))
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def _number(key: str, where: str, value: Any, is_int: bool) -> int | float:
    lo, hi = RANGES.get(key, (0, math.inf))
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (is_int and int(value) != value):
        kind = "an integer" if is_int else "a finite number"
        raise ConfigError(f"{where} must be {kind} in [{lo}, {hi}], got {value!r}")
    value = int(value) if is_int else float(value)
    if not lo <= value <= hi:
        raise ConfigError(f"{where} = {value!r} is out of range; allowed [{lo}, {hi}]")
    return value


def check_range(key: str, value: Any, where: str | None = None) -> float:
    """``value`` as a finite number inside ``RANGES[key]`` (for arguments that bypass a config, e.g.
    ``build_method(width=...)``), or ConfigError."""
    return _number(key, where or key, value, is_int=False)
