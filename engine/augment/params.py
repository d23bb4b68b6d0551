"""AugParams: the explicit per-image parameters of one augmented view (replayable through ``apply``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class AugParams:
    """One row per image; every tensor has length B and lives on the images' device.

    Build by hand for the app (``dataclasses.replace(identity_params(...), hue=...)``) or sample with
    ``sample_params``. Colour factors (1, 1, 1, 0) and order (0, 1, 2, 3) mean "no jitter".
    """

    crop: Tensor  # [B, 4] float: top, left, height, width in source pixels
    flip: Tensor  # [B] bool
    jitter: Tensor  # [B] bool: colour jitter applied
    order: Tensor  # [B, 4] long: permutation of (0 brightness, 1 contrast, 2 saturation, 3 hue)
    brightness: Tensor  # [B] float factor
    contrast: Tensor  # [B] float factor
    saturation: Tensor  # [B] float factor
    hue: Tensor  # [B] float shift in turns
    gray: Tensor  # [B] bool
    blur: Tensor  # [B] bool
    sigma: Tensor  # [B] float blur sigma (pixels of the output)
    solarize: Tensor  # [B] bool
    rotation: Tensor  # [B] float degrees, counter-clockwise (0 = none)
    size: int  # output side S

    def __len__(self) -> int:
        return int(self.crop.shape[0])

    def to(self, device: torch.device | str) -> AugParams:
        """The same parameters on another device."""
        return dataclasses.replace(self, **{k: v.to(device) for k, v in _tensors(self).items()})

    def select(self, index: Tensor | slice) -> AugParams:
        """The rows ``index`` (a slice, bool mask or index tensor)."""
        return dataclasses.replace(self, **{k: v[index] for k, v in _tensors(self).items()})


def _tensors(p: AugParams) -> dict[str, Tensor]:
    return {f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name != "size"}


def cat_params(parts: list[AugParams]) -> AugParams:
    """Concatenate the rows of several AugParams with the same output size."""
    keys = _tensors(parts[0])
    return dataclasses.replace(parts[0], **{k: torch.cat([getattr(p, k) for p in parts]) for k in keys})


def identity_params(
    n: int, image_hw: tuple[int, int], size: int, device: torch.device | str = "cpu"
) -> AugParams:
    """Parameters that only resize the full image to ``size`` (EquiMod's x0)."""
    h, w = image_hw
    f = dict(device=device, dtype=torch.float32)
    false = torch.zeros(n, dtype=torch.bool, device=device)
    return AugParams(
        crop=torch.tensor([0.0, 0.0, float(h), float(w)], **f).repeat(n, 1),
        flip=false,
        jitter=false.clone(),
        order=torch.arange(4, device=device).repeat(n, 1),
        brightness=torch.ones(n, **f),
        contrast=torch.ones(n, **f),
        saturation=torch.ones(n, **f),
        hue=torch.zeros(n, **f),
        gray=false.clone(),
        blur=false.clone(),
        sigma=torch.zeros(n, **f),
        solarize=false.clone(),
        rotation=torch.zeros(n, **f),
        size=int(size),
    )
