"""``preprocess``: the one way an un-augmented image batch becomes model input (training's kNN monitor, embedding
stores, the lab's original image, the displacement evaluation).

It IS the identity view of the augmentation pipeline: ``apply(images, identity_params(...))`` runs the same
:func:`resize_crop` on the same identity crop, and its later stages leave the result unchanged, so for any image
(square, wide, tall, tiny) the two tensors are equal and an identity augmentation moves no embedding.

Resize rule: the WHOLE image (crop box ``(0, 0, H, W)``, the identity crop of ``identity_params``) is resized to
``S x S`` with the pipeline's default filter (antialiased bicubic, :data:`INTERPOLATION`), then clamped to [0, 1].
Non-square images are therefore stretched, not centre-cropped. A ``S x S`` image is returned as it is.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from engine.augment import ops
from engine.augment.params import identity_params
from engine.core.errors import ConfigError

INTERPOLATION = "bicubic"  # the pipeline's default filter (``apply``, every recipe unless it says otherwise)


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] or float [0, 1] ``[B, 3, H, W]`` -> float32 in [0, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise ConfigError(f"images must be uint8 or float, got {images.dtype}")
    return images.float()


def resize_crop(
    x: Tensor, crop: Tensor, flip: Tensor, size: int, interpolation: str = INTERPOLATION
) -> Tensor:
    """The pipeline's geometric stage: crop ``crop`` [B, 4] (top, left, h, w), resize to size x size, mirror rows
    with ``flip``, clamp to [0, 1]. ``x`` float [B, 3, H, W]."""
    if interpolation not in ops.FILTERS:
        raise ConfigError(f"interpolation {interpolation!r}: choose from {sorted(ops.FILTERS)}")
    return ops.resized_crop(x, crop.float(), flip, size, interpolation).clamp_(0.0, 1.0)


def as_batch(images: np.ndarray | Tensor, device: torch.device | str | None = None) -> Tensor:
    """A ``[B, 3, H, W]`` tensor on ``device`` from a numpy ``[B, H, W, 3]`` / ``[H, W, 3]`` array (the datasets'
    layout; read-only memory maps are copied) or a ``[B, 3, H, W]`` / ``[3, H, W]`` tensor (the pipeline's)."""
    if isinstance(images, np.ndarray):
        a = np.array(images, copy=True, order="C")
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[3] != 3:
            raise ConfigError(f"a numpy image batch must be [B, H, W, 3], got shape {images.shape}")
        x = torch.from_numpy(a).permute(0, 3, 1, 2)
    else:
        x = images[None] if images.ndim == 3 else images
    return x if device is None else x.to(device)


def preprocess(images: np.ndarray | Tensor, size: int, device: torch.device | str | None = None) -> Tensor:
    """Model input for un-augmented images: float32 ``[B, 3, size, size]`` in [0, 1], in channels-last memory.

    ``images``: uint8 (or float in [0, 1]) as numpy ``[B, H, W, 3]`` or a tensor ``[B, 3, H, W]`` (a single image
    without B is accepted). The whole image is resized (see the module docstring); the result equals the identity
    view ``apply(images, identity_params(B, (H, W), size))`` exactly. Channels-last layout is what stores were
    embedded from, so convolutions take the same path and shipped stores stay bit-identical.
    """
    x = to_float(as_batch(images, device))
    n, _, h, w = x.shape
    ident = identity_params(n, (h, w), size, x.device)
    out = resize_crop(x, ident.crop, ident.flip, ident.size)
    return out.contiguous(memory_format=torch.channels_last)
