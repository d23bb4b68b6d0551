"""Method configs from user options: unknown keys and out-of-range values raise ConfigError naming them.

Ranges and coercion are the trainer's too (``engine.core.values``): ``model.options.<name>`` in one table.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.augment import RECIPES
from engine.core.errors import ConfigError
from engine.core.values import coerce, option_key


def make_config(config_cls: type, method: str, options: dict[str, Any] | None) -> Any:
    """Build ``config_cls`` from ``options`` (defaults for missing keys), validating keys, types and ranges."""
    options = dict(options or {})
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for method '{method}'; allowed keys: {sorted(defaults) or 'none'}"
        )
    choices = getattr(config_cls, "CHOICES", {})  # allowed strings of the options that have a fixed set
    values = {
        k: coerce(
            option_key(k),
            v,
            defaults[k],
            where=f"option '{k}' of method '{method}' ({option_key(k)})",
            choices=choices.get(k),
        )
        for k, v in options.items()
    }
    if "recipe" in values and values["recipe"] not in RECIPES:
        raise ConfigError(
            f"option 'recipe' of method '{method}' = {values['recipe']!r} is unknown; "
            f"choose from {sorted(RECIPES)}"
        )
    return config_cls(**values)
