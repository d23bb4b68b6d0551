"""Images as the dashboard shows them: any uploaded or dataset image made safe to draw at any width.

A 10000×10 upload drawn 160 px wide is 0.16 px tall, and the browser widget refuses it. :func:`displayable`
shrinks the long side to ``max_side`` (nearest neighbour: a thumbnail, never used for embedding) and letterboxes
the short side so the aspect ratio is at most ``max_aspect``; every side is then at least ``max_side /
max_aspect`` pixels. Pure numpy; :func:`png_data_uri` encodes one for inline HTML.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

MAX_SIDE = 512  # pixels of the long side shown; the page scales it down further
MAX_ASPECT = 4.0  # long side / short side after letterboxing
FILL = 128  # letterbox grey


def to_uint8_hwc(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] from uint8 or float [0, 1] images, [H, W], [H, W, 1|3|4] or channel-first [1|3, H, W]."""
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3, 4):
        x = np.transpose(x, (1, 2, 0))
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"not an image array: shape {tuple(np.shape(image))}")
    x = x[..., :3]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.dtype != np.uint8:
        x = np.round(np.clip(np.nan_to_num(x.astype(np.float64)), 0.0, 1.0) * 255.0).astype(np.uint8)
    return x


def shrink(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """``image`` [H, W, C] with its long side at most ``max_side`` (nearest neighbour; aspect kept, sides >= 1)."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w, 1))
    if scale >= 1.0:
        return image
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    rows = np.minimum((np.arange(nh) + 0.5) * h / nh, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(nw) + 0.5) * w / nw, w - 1).astype(np.int64)
    return image[rows][:, cols]


def letterbox(image: np.ndarray, max_aspect: float = MAX_ASPECT, fill: int = FILL) -> np.ndarray:
    """``image`` [H, W, C] centred on a ``fill`` band so that long side / short side <= ``max_aspect``."""
    h, w = image.shape[:2]
    th = max(h, int(np.ceil(w / max_aspect)))
    tw = max(w, int(np.ceil(h / max_aspect)))
    if (th, tw) == (h, w):
        return image
    out = np.full((th, tw, image.shape[2]), fill, dtype=image.dtype)
    top, left = (th - h) // 2, (tw - w) // 2
    out[top : top + h, left : left + w] = image
    return out


def displayable(image: np.ndarray, max_side: int = MAX_SIDE, max_aspect: float = MAX_ASPECT) -> np.ndarray:
    """uint8 [H, W, 3] thumbnail of ``image`` that any display width can draw: long side <= ``max_side``,
    aspect <= ``max_aspect`` (letterboxed), short side >= 1. Images already within bounds come back unchanged
    (as uint8 HWC)."""
    return letterbox(shrink(to_uint8_hwc(image), max_side), max_aspect)


def png_data_uri(image: np.ndarray) -> str:
    """``data:image/png;base64,…`` of :func:`displayable` ``image``: a thumbnail a page can inline in its HTML (drawn
    with the page, no media request)."""
    buf = io.BytesIO()
    Image.fromarray(displayable(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
