"""Colour probe targets computed from the images themselves, for every dataset (CIFAR-10 included): the question
"does the representation keep the colour that invariance throws away?" needs a colour target where no generator
factor exists.

Per image (HSV of every pixel, :func:`hsv`):

* ``image_hue``: the circular mean hue in turns, weighted by saturation (a grey pixel has no hue), i.e. the angle
  of ``sum_p s_p * exp(2 pi i h_p)``. Undefined (masked) when that resultant is shorter than
  :data:`MIN_HUE_STRENGTH` of the pixel count: a grey or evenly multicoloured image has no dominant hue.
* ``image_saturation``: the mean saturation in [0, 1].

Computed from the store's thumbnails (a box-filtered copy: the means are nearly the same and need no dataset).
"""

from __future__ import annotations

import numpy as np

MIN_HUE_STRENGTH = 0.05  # |saturation-weighted mean hue vector| below this: no dominant hue, masked


def hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hue in turns [0, 1), saturation, value) of uint8 or [0, 1] float RGB pixels ``[..., 3]`` (hexcone model,
    as ``colorsys.rgb_to_hsv``; hue 0 where saturation is 0)."""
    x = np.asarray(rgb, np.float64)
    x = x / 255.0 if np.asarray(rgb).dtype == np.uint8 else x
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    d = mx - mn
    safe = np.where(d > 0, d, 1.0)
    h = np.where(
        mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    h = np.where(d > 0, h / 6.0, 0.0) % 1.0
    s = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
    return h, s, mx


def colour_stats(images: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image_hue in turns, hue defined mask, image_saturation) of uint8 images ``[N, H, W, 3]``, in batches."""
    hues, masks, sats = [], [], []
    for start in range(0, len(images), batch):
        h, s, _ = hsv(np.asarray(images[start : start + batch]))
        h, s = h.reshape(len(h), -1), s.reshape(len(s), -1)
        z = (s * np.exp(2j * np.pi * h)).mean(1)
        hues.append((np.angle(z) / (2 * np.pi)) % 1.0)
        masks.append(np.abs(z) >= MIN_HUE_STRENGTH)
        sats.append(s.mean(1))
    if not hues:
        return np.zeros(0), np.zeros(0, bool), np.zeros(0)
    return np.concatenate(hues), np.concatenate(masks), np.concatenate(sats)


def colour_targets(images: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, float | None]]:
    """name -> (target, mask, period) for the factor probes (engine.eval.evaluate.eval_factors): ``image_hue``
    (circular, period 1) and ``image_saturation``."""
    hue, defined, sat = colour_stats(images)
    return {"image_hue": (hue, defined, 1.0), "image_saturation": (sat, np.ones(len(sat), bool), None)}
