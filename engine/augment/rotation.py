"""E-SSL's rotation pretext: every image in all four orientations (docs/methods.md §1.3)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Rotated(NamedTuple):
    """``rotate4``'s result; unpacks as ``x4, labels = rotate4(x)``."""

    images: Tensor  # [4B, C, H, W]: blocks of B images rotated by 0, 90, 180, 270 degrees counter-clockwise
    labels: Tensor  # [4B] long: 0, 1, 2, 3 = number of quarter turns


def rotate4(x: Tensor) -> Rotated:
    """All four rotations of a batch [B, C, H, W] (square images), on ``x.device``; labels k = quarter turns."""
    x4 = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
    return Rotated(images=x4, labels=labels)
