"""Parameter vectors: EquiMod's 15-d CIFAR layout (docs/methods.md §2.3), its z-score stats computed from the recipe,
and a normalised fixed-length encoding (cf. apple/ml-duet ``ParamAugStack``)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from engine.augment.params import AugParams
from engine.augment.recipes import Recipe
from engine.augment.sampling import sample_params

EQUIMOD_NAMES: tuple[str, ...] = (
    "i", "j", "h", "w", "flip", "jitter", "order0", "order1", "order2", "order3",
    "brightness", "contrast", "saturation", "hue", "gray",
)  # fmt: skip

NORMALIZED_NAMES: tuple[str, ...] = (
    *("crop_top", "crop_left", "crop_height", "crop_width", "flip", "jitter"),
    *("brightness", "contrast", "saturation", "hue"),
    *(f"order{k}_is_{op}" for k in range(4) for op in ("b", "c", "s", "h")),  # step k runs op
    *("gray", "blur", "sigma", "solarize", "rotation_cos", "rotation_sin"),
)

STATS_SAMPLES = 100_000
STATS_SEED = 0


class ParamStats(NamedTuple):
    """z-scoring statistics of ``equimod_vector``; unpacks as ``mean, std = param_stats(...)``."""

    mean: Tensor  # float [15]
    std: Tensor  # float [15]


def equimod_vector(params: AugParams, image_hw: tuple[int, int]) -> Tensor:
    """[B, 15] raw values in EquiMod's order (``EQUIMOD_NAMES``); neutral values where an op was not applied.

    ``image_hw`` is unused by this raw layout (crop in source pixels) and kept for the contract's symmetry.
    """
    p = params
    order = torch.where(p.jitter[:, None], p.order, torch.arange(4, device=p.order.device))
    cols = [
        p.crop.float(),
        p.flip[:, None].float(),
        p.jitter[:, None].float(),
        order.float(),
        torch.stack([p.brightness, p.contrast, p.saturation, p.hue], dim=1).float(),
        p.gray[:, None].float(),
    ]
    return torch.cat(cols, dim=1)


def param_stats(recipe: Recipe, image_hw: tuple[int, int], samples: int = STATS_SAMPLES) -> ParamStats:
    """Mean and std of ``equimod_vector`` under ``recipe``: Monte Carlo over ``samples`` draws, fixed seed, CPU.

    Replaces EquiMod's hard-coded ``p_mean``/``p_std``; a zero std (an op never varied) becomes 1.
    """
    g = torch.Generator().manual_seed(STATS_SEED)
    v = equimod_vector(sample_params(recipe, samples, image_hw, g), image_hw).double()
    std = v.std(dim=0)
    return ParamStats(mean=v.mean(dim=0).float(), std=torch.where(std > 0, std, 1.0).float())


def _unit(x: Tensor, lo: float, hi: float) -> Tensor:
    """Rescale [lo, hi] to [0, 1]; 0.5 when the range is empty."""
    return (x - lo) / (hi - lo) if hi > lo else torch.full_like(x, 0.5)


def normalized_vector(params: AugParams, recipe: Recipe, image_hw: tuple[int, int]) -> Tensor:
    """[B, 32] in ``NORMALIZED_NAMES`` order: crop box / image size, flags 0/1, colour factors rescaled to [0, 1]
    by the recipe's sampling range, op order one-hot (4 steps x 4 ops), blur sigma rescaled by its range (0 when
    not blurred), rotation as (cos, sin). Non-applied jitter gives neutral factors and order (0, 1, 2, 3)."""
    p = params
    h, w = image_hw
    size = torch.tensor([h, w, h, w], dtype=torch.float32, device=p.crop.device)
    rng = recipe.jitter_ranges
    factors = [_unit(getattr(p, k).float(), *rng[k]) for k in ("brightness", "contrast", "saturation", "hue")]
    order = torch.where(p.jitter[:, None], p.order, torch.arange(4, device=p.order.device))
    onehot = torch.nn.functional.one_hot(order, 4).float().flatten(1)  # [B, 16]: step-major
    sigma = torch.where(p.blur, _unit(p.sigma.float(), *recipe.sigma), torch.zeros_like(p.sigma.float()))
    rad = torch.deg2rad(p.rotation.float())
    cols = [
        p.crop.float() / size,
        p.flip[:, None].float(),
        p.jitter[:, None].float(),
        torch.stack(factors, dim=1),
        onehot,
        torch.stack([p.gray.float(), p.blur.float(), sigma, p.solarize.float()], dim=1),
        torch.stack([torch.cos(rad), torch.sin(rad)], dim=1),
    ]
    return torch.cat(cols, dim=1)
