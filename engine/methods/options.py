"""Method configs from user options: unknown keys and out-of-range values raise ConfigError naming them."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from engine.augment import RECIPES
from engine.core.errors import ConfigError

# Allowed ranges (inclusive) shared by every method config that has the field.
RANGES: dict[str, tuple[float, float]] = {
    "temperature": (1e-3, 10.0),
    "temperature_y": (1e-3, 10.0),
    "proj_dim": (1, 65536),
    "y_dim": (1, 65536),
    "p_embed_dim": (1, 65536),
    "ef_dim": (1, 65536),
    "lr_scale": (1e-3, 1e3),
    "rot_weight": (0.0, 100.0),
    "equi_weight": (0.0, 100.0),
    "sep_weight": (0.0, 100.0),
    "reg_weight": (0.0, 100.0),
    "rot_view_scale": (0.125, 1.0),
    "split": (0.05, 0.95),
}
HIDDEN_MAX = 65536


def _coerce(method: str, key: str, value: Any, default: Any) -> Any:
    where = f"option '{key}' of method '{method}'"
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
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    return value


def make_config(config_cls: type, method: str, options: dict[str, Any] | None) -> Any:
    """Build ``config_cls`` from ``options`` (defaults for missing keys), validating keys, types and ranges."""
    options = dict(options or {})
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for method '{method}'; allowed keys: {sorted(defaults) or 'none'}"
        )
    values = {k: _coerce(method, k, v, defaults[k]) for k, v in options.items()}
    if "recipe" in values and values["recipe"] not in RECIPES:
        raise ConfigError(
            f"option 'recipe' of method '{method}' = {values['recipe']!r} is unknown; "
            f"choose from {sorted(RECIPES)}"
        )
    for key, value in values.items():
        if key in RANGES:
            lo, hi = RANGES[key]
            if not lo <= value <= hi:
                raise ConfigError(
                    f"option '{key}' of method '{method}' = {value!r} is out of range; allowed [{lo}, {hi}]"
                )
    return config_cls(**values)
