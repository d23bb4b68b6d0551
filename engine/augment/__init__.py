"""The one parametric, batched augmentation pipeline (training, metrics and the app all call it).

``augment(images, recipe, generator)`` samples per-image ``AugParams`` and applies them to a whole batch (CPU or
CUDA, uint8 or float ``[B, 3, H, W]``) -> float ``[B, 3, S, S]`` in [0, 1]; ``apply(images, params)`` replays
them exactly. Parameter vectors: ``equimod_vector`` (EquiMod's 15-d layout) with ``param_stats`` computed from
the recipe, and ``normalized_vector``. ``rotate4`` is E-SSL's rotation pretext; ``FAMILIES`` the sweep families.
"""

from engine.augment.families import FAMILIES, Family
from engine.augment.params import AugParams, cat_params, identity_params
from engine.augment.pipeline import View, apply, augment, to_float
from engine.augment.recipes import RECIPES, Recipe, for_image, get_recipe
from engine.augment.rotation import Rotated, rotate4
from engine.augment.sampling import sample_params
from engine.augment.vectors import (
    EQUIMOD_NAMES,
    NORMALIZED_NAMES,
    ParamStats,
    equimod_vector,
    normalized_vector,
    param_stats,
)

__all__ = [
    "EQUIMOD_NAMES",
    "FAMILIES",
    "NORMALIZED_NAMES",
    "RECIPES",
    "AugParams",
    "Family",
    "ParamStats",
    "Recipe",
    "Rotated",
    "View",
    "apply",
    "augment",
    "cat_params",
    "equimod_vector",
    "for_image",
    "get_recipe",
    "identity_params",
    "normalized_vector",
    "param_stats",
    "rotate4",
    "sample_params",
    "to_float",
]
