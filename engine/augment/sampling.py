"""Vectorised sampling of AugParams from a Recipe with an explicit torch.Generator."""

from __future__ import annotations

import math

import torch
from torch import Generator, Tensor

from engine.augment.params import AugParams
from engine.augment.recipes import Recipe

ATTEMPTS = 10  # torchvision RandomResizedCrop.get_params tries 10 boxes before its fallback


def _uniform(lo: float, hi: float, shape: tuple[int, ...], g: Generator) -> Tensor:
    return torch.rand(shape, generator=g, device=g.device) * (hi - lo) + lo


def crop_boxes(recipe: Recipe, n: int, image_hw: tuple[int, int], g: Generator) -> Tensor:
    """[n, 4] (top, left, height, width): torchvision ``RandomResizedCrop.get_params``, all rows at once.

    Each row takes its first of 10 valid attempts; rows with none use torchvision's centre fallback.
    """
    height, width = image_hw
    area = height * width
    target = area * _uniform(*recipe.scale, (n, ATTEMPTS), g)
    aspect = torch.exp(_uniform(math.log(recipe.ratio[0]), math.log(recipe.ratio[1]), (n, ATTEMPTS), g))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = valid.float().argmax(dim=1, keepdim=True)  # first valid attempt (0 if none)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    # torch.randint(0, height - h + 1) per row, vectorised as floor(U * count)
    top = torch.floor(torch.rand(n, generator=g, device=g.device) * (height - h + 1))
    left = torch.floor(torch.rand(n, generator=g, device=g.device) * (width - w + 1))
    # fallback: the whole image clipped to the ratio range, centred
    in_ratio = width / height
    if in_ratio < recipe.ratio[0]:
        fw, fh = width, round(width / recipe.ratio[0])
    elif in_ratio > recipe.ratio[1]:
        fw, fh = round(height * recipe.ratio[1]), height
    else:
        fw, fh = width, height
    fallback = torch.tensor(
        [(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=torch.float32, device=g.device
    )
    box = torch.stack([top, left, h, w], dim=1)
    return torch.where(valid.any(dim=1, keepdim=True), box, fallback)


def _bernoulli(p: float, n: int, g: Generator) -> Tensor:
    return torch.rand(n, generator=g, device=g.device) < p


def sample_params(recipe: Recipe, n: int, image_hw: tuple[int, int], generator: Generator) -> AugParams:
    """Random parameters for ``n`` views of images of size ``image_hw`` on the generator's device.

    Deterministic under the generator's seed; non-applied ops get their neutral values.
    """
    g = generator
    crop = crop_boxes(recipe, n, image_hw, g)
    flip = _bernoulli(recipe.flip_p, n, g)
    jitter = _bernoulli(recipe.jitter_p, n, g)
    # ColorJitter.get_params: a random permutation of the 4 ops, then each factor from its interval
    perm = torch.argsort(torch.rand(n, 4, generator=g, device=g.device), dim=1)
    order = torch.where(jitter[:, None], perm, torch.arange(4, device=g.device))
    neutral = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
    factors = {
        k: torch.where(jitter, _uniform(lo, hi, (n,), g), torch.full((n,), neutral[k], device=g.device))
        for k, (lo, hi) in recipe.jitter_ranges.items()
    }
    gray = _bernoulli(recipe.gray_p, n, g)
    blur = _bernoulli(recipe.blur_p, n, g)
    sigma = torch.where(blur, _uniform(*recipe.sigma, (n,), g), torch.zeros(n, device=g.device))
    solarize = _bernoulli(recipe.solarize_p, n, g)
    if recipe.rotations:
        angles = torch.tensor(recipe.rotations, dtype=torch.float32, device=g.device)
        rotation = angles[torch.randint(len(angles), (n,), generator=g, device=g.device)]
    else:
        rotation = torch.zeros(n, device=g.device)
    return AugParams(
        crop=crop,
        flip=flip,
        jitter=jitter,
        order=order,
        gray=gray,
        blur=blur,
        sigma=sigma,
        solarize=solarize,
        rotation=rotation,
        size=recipe.size,
        **factors,
    )
