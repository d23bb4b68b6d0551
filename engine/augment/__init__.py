"""The one parametric, batched augmentation pipeline (training, metrics and the app all call it).

``augment(images, recipe, generator)`` samples per-image ``AugParams`` and applies them to a whole batch (CPU or
CUDA, uint8 or float ``[B, 3, H, W]``) -> float ``[B, 3, S, S]`` in [0, 1]; ``apply(images, params)`` replays
them exactly. Parameter vectors: ``equimod_vector`` (EquiMod's 15-d layout) with ``param_stats`` computed from
the recipe, and ``normalized_vector``. ``preprocess(images, size)`` turns un-augmented images into model input
(training's kNN monitor, stores, the lab, the displacement evaluation); it equals the identity view exactly.
``rotate4`` is E-SSL's rotation pretext. ``FAMILIES`` is the one table of
augmentation families (label, range, neutral value, sweep grid, mapping onto AugParams) that the lab, the evaluation's
sweeps, the map and the reports read; ``training_recipe`` the recipe a built method was trained with.
"""

from engine.augment.families import FAMILIES, Family, compose, find_family
from engine.augment.params import AugParams, cat_params, identity_params
from engine.augment.pipeline import View, apply, augment, identity_view, to_float
from engine.augment.preprocess import preprocess
from engine.augment.recipes import RECIPES, Recipe, for_image, get_recipe, light_recipe, training_recipe
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
    "compose",
    "equimod_vector",
    "find_family",
    "for_image",
    "get_recipe",
    "identity_params",
    "identity_view",
    "light_recipe",
    "normalized_vector",
    "param_stats",
    "preprocess",
    "rotate4",
    "sample_params",
    "to_float",
    "training_recipe",
]
