"""Augmentation families for displacement metrics and the app's sweep mode: one op varied, all else identity."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.augment.params import AugParams, identity_params

Setter = Callable[[AugParams, Tensor, tuple[int, int]], dict[str, Tensor]]


@dataclass(frozen=True)
class Family:
    """One augmentation family: ``params(strength, ...)`` = identity with this op set to ``strength``."""

    name: str
    low: float
    high: float
    neutral: float  # strength giving the identity
    sweep: tuple[float, ...]  # default strengths for sweeps and metrics
    setter: Setter  # (identity params, strength column [n], image_hw) -> fields to replace

    def params(
        self,
        strength: float,
        n: int,
        image_hw: tuple[int, int],
        size: int,
        device: torch.device | str = "cpu",
    ) -> AugParams:
        """``n`` identical rows of identity params with this family's op at ``strength``."""
        base = identity_params(n, image_hw, size, device)
        s = torch.full((n,), float(strength), dtype=torch.float32, device=device)
        return dataclasses.replace(base, **self.setter(base, s, image_hw))


def _centre_crop(p: AugParams, s: Tensor, hw: tuple[int, int]) -> dict[str, Tensor]:
    """A centred box keeping the image's aspect and a fraction ``s`` of its area."""
    h, w = hw
    side = s.clamp(1e-4, 1.0).sqrt()
    ch, cw = side * h, side * w
    return {"crop": torch.stack([(h - ch) / 2, (w - cw) / 2, ch, cw], dim=1)}


def _colour(field: str, neutral: float) -> Setter:
    def setter(p: AugParams, s: Tensor, hw: tuple[int, int]) -> dict[str, Tensor]:
        return {field: s, "jitter": s != neutral}

    return setter


def _flag(field: str) -> Setter:
    return lambda p, s, hw: {field: s >= 0.5}


def _grid(lo: float, hi: float, n: int = 9) -> tuple[float, ...]:
    return tuple(float(v) for v in torch.linspace(lo, hi, n).tolist())


def _family(name: str, low: float, high: float, neutral: float, setter: Setter, n: int = 9) -> Family:
    return Family(name=name, low=low, high=high, neutral=neutral, sweep=_grid(low, high, n), setter=setter)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        _family("crop_scale", 0.2, 1.0, 1.0, _centre_crop),
        _family("flip", 0.0, 1.0, 0.0, _flag("flip"), n=2),
        _family("brightness", 0.2, 1.8, 1.0, _colour("brightness", 1.0)),
        _family("contrast", 0.2, 1.8, 1.0, _colour("contrast", 1.0)),
        _family("saturation", 0.0, 2.0, 1.0, _colour("saturation", 1.0)),
        _family("hue", -0.5, 0.5, 0.0, _colour("hue", 0.0)),
        _family("grayscale", 0.0, 1.0, 0.0, _flag("gray"), n=2),
        _family("blur", 0.0, 2.0, 0.0, lambda p, s, hw: {"blur": s > 0, "sigma": s}),
        _family("rotation", 0.0, 360.0, 0.0, lambda p, s, hw: {"rotation": s}),
    )
}
