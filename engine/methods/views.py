"""Glue between the methods and ``engine.augment`` (imported lazily so the method registry never depends on
the augmentation package being importable first)."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import Generator, Tensor

from engine import augment as aug
from engine.augment import get_recipe


def recipe(name: str, size: int) -> Any:
    """``RECIPES[name]`` with its output side set to ``size`` (recipes are written for 32 px CIFAR)."""

    r = get_recipe(name)
    if dataclasses.is_dataclass(r) and hasattr(r, "size") and r.size != size:
        r = dataclasses.replace(r, size=size)
    return r


def training_recipe(model: Any) -> Any:
    """The recipe ``model`` was trained with (its config's ``recipe``, else ``simclr``) at the model's size."""
    name = getattr(getattr(model, "config", None), "recipe", "simclr")
    return recipe(name, int(getattr(model, "image_size", 32)))


def light_recipe(size: int) -> Any:
    """The rotation-pretext reference's light augmentation (§4.2): crop + flip, no colour jitter/grayscale."""
    r = recipe("simclr", size)
    changes = {"jitter_p": 0.0, "gray_p": 0.0, "scale": (0.6, 1.0)}
    fields = {f.name for f in dataclasses.fields(r)} if dataclasses.is_dataclass(r) else set()
    return dataclasses.replace(r, **{k: v for k, v in changes.items() if k in fields}) if fields else r


def augment(images: Tensor, recipe_obj: Any, generator: Generator) -> tuple[Tensor, Any]:
    """One augmented view of every image: ``(views [B,3,S,S] in [0,1], AugParams)``."""

    return aug.augment(images, recipe_obj, generator)


def identity_view(images: Tensor, size: int) -> Tensor:
    """The un-augmented image resized to ``size`` (EquiMod's x0), through the same ``apply`` as training."""

    n, _, h, w = images.shape
    return aug.apply(images, aug.identity_params(n, (h, w), size, images.device))


def equimod_vector(params: Any, image_hw: tuple[int, int]) -> Tensor:

    return aug.equimod_vector(params, image_hw)


def param_stats(recipe_obj: Any, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:

    return aug.param_stats(recipe_obj, image_hw)


def rotate4(x: Tensor) -> tuple[Tensor, Tensor]:

    return aug.rotate4(x)
