"""``apply`` (replay explicit parameters on a batch) and ``augment`` (sample + apply): one code path for all."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Generator, Tensor

from engine.augment import ops
from engine.augment.params import AugParams, identity_params
from engine.augment.preprocess import INTERPOLATION, resize_crop, to_float
from engine.augment.recipes import Recipe
from engine.augment.sampling import sample_params
from engine.core.errors import ConfigError


class View(NamedTuple):
    """``augment``'s result; unpacks as ``views, params = augment(...)``."""

    views: Tensor  # float [B, 3, S, S] in [0, 1]
    params: AugParams


def _on_rows(x: Tensor, rows: Tensor, fn, *args: Tensor) -> Tensor:
    """``x`` with ``fn`` applied to the rows selected by bool mask ``rows`` (batched, no per-image loop).

    Writes into ``x``: callers pass tensors that ``apply`` itself created, never the caller's images.
    """
    idx = rows.nonzero()[:, 0]
    if idx.numel() == 0:
        return x
    x[idx] = fn(x[idx], *(a[idx] for a in args))
    return x


def colour_jitter(x: Tensor, p: AugParams) -> Tensor:
    """ColorJitter with a per-row random op order: 4 steps, each running every op on the rows due for it."""
    factors = (p.brightness, p.contrast, p.saturation, p.hue)
    for step in range(4):
        for op_id, op in enumerate(ops.COLOUR_OPS):
            x = _on_rows(x, p.jitter & (p.order[:, step] == op_id), op, factors[op_id])
    return x


def apply(images: Tensor, params: AugParams, interpolation: str = INTERPOLATION) -> Tensor:
    """The views ``params`` describe: float ``[B, 3, S, S]`` in [0, 1]. Deterministic (replay on the same device).

    Order: crop + resize + flip, colour jitter, grayscale, blur, solarize, rotation. A single image is broadcast
    over all parameter rows (the app's sweeps).
    """
    x = to_float(images)
    p = params.to(x.device)
    if len(x) == 1 and len(p) > 1:
        x = x.expand(len(p), -1, -1, -1)
    if len(x) != len(p):
        raise ConfigError(f"{len(x)} images but {len(p)} parameter rows: pass one row per image")
    x = resize_crop(x, p.crop, p.flip, p.size, interpolation)  # the same stage as engine.augment.preprocess
    x = colour_jitter(x, p)
    x = torch.where(p.gray[:, None, None, None], ops.grayscale(x).expand_as(x), x)
    x = _on_rows(x, p.blur, ops.gaussian_blur, p.sigma)
    x = _on_rows(x, p.solarize, ops.solarize)
    x = _on_rows(x, p.rotation.remainder(360.0) != 0, ops.rotate, p.rotation)
    return x.clamp_(0.0, 1.0)


def augment(images: Tensor, recipe: Recipe, generator: Generator) -> View:
    """Sample parameters with ``generator`` (on the images' device) and apply them: ``(views, params)``."""
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    params = sample_params(recipe, len(images), hw, generator)
    return View(views=apply(images, params, recipe.interpolation), params=params)


def identity_view(images: Tensor, size: int) -> Tensor:
    """The un-augmented images resized to ``size`` (EquiMod's x0), through the same ``apply`` as every view."""
    n, _, h, w = images.shape
    return apply(images, identity_params(n, (h, w), size, images.device))
