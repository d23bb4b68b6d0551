"""A query image for retrieval: one uploaded image embedded the way store items were embedded."""

from __future__ import annotations

import numpy as np
import torch

from engine.augment import preprocess
from engine.core.errors import ConfigError


def embed_image(model, image: np.ndarray, space: str) -> np.ndarray:
    """float32 [D] embedding of one uint8 [H, W, 3] image in ``space``, through engine.augment.preprocess
    (the whole image resized to the model's input size, as stores and the lab's original are)."""
    device = next(model.parameters()).device
    size = int(getattr(model, "image_size", image.shape[0]))
    with torch.no_grad():
        emb = model.embed(preprocess(image, size, device))
    if space not in emb:
        raise ConfigError(f"space {space!r} not produced by this model: choose from {sorted(emb)}")
    return emb[space][0].float().cpu().numpy()
