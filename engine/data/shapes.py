"""``shapes``: the embedded default dataset, generated from known factors (no files needed).

Each 32x32 RGB image shows one coloured shape on a flat coloured background. Every factor is sampled
**independently and uniformly** in the range listed in :data:`FACTOR_RANGES` (the shape class exactly balanced),
so a probe on an embedding can tell which factors a representation keeps and which it discards:

===============  ==================  ===========================================================
column           range               meaning
===============  ==================  ===========================================================
label / shape    0 .. 9              class index into :data:`CLASSES`
hue              [0, 1)              shape hue (HSV)
saturation       [0.5, 1]            shape saturation
value            [0.6, 1]            shape brightness; the background is darker, see bg_value
scale            [0.5, 1]            shape radius = scale * 11 px
angle            [0, 360)            counter-clockwise rotation in degrees
x, y             [11.5, 20.5]        shape centre in pixels (x right, y down; image centre 16)
bg_hue           [0, 1)              background hue (saturation fixed at 0.35)
bg_value         [0, 0.35]           background brightness: always >= 0.25 below the shape's
symmetry         per class           rotational symmetry order (0 = continuous, e.g. circle)
angle_mod        [0, 360/symmetry)   angle modulo the symmetry (0 for the circle)
===============  ==================  ===========================================================

Classes (rotational symmetry order): circle (0 = continuous), square (4), triangle (3), plus (4), star (5),
hexagon (6), semicircle (1), arrow (1), L (1), T (1); :data:`SYMMETRY` holds the table, and
:func:`render_shape` draws one item from a :class:`ShapeFactors`.

A rotation probe should regress ``angle_mod`` (better: sin/cos of ``symmetry * angle``), because a square turned
by 90 degrees is the same image.

``orientation="upright"`` (registered as the dataset ``shapes_upright``) draws angles in [-20, 20) instead of
[0, 360): shapes keep a canonical "up", so predicting a 0/90/180/270 degree rotation (E-SSL, RotNet) becomes
learnable, up to each shape's own symmetry (a square turned by 90 degrees is still the same image). Rasterisation is vectorised numpy with 4x4 supersampling for anti-aliasing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from engine.core.errors import ConfigError
from engine.data.dataset import Arrays, ImageDataset, cached

GENERATOR_VERSION = 2  # bump whenever pixels or factors change: caches are keyed on it
IMAGE_SIZE = 32
SUPERSAMPLE = 4
MAX_RADIUS_PX = 11.0
BG_SATURATION = 0.35
DEFAULT_SIZES = {"train": 20_000, "test": 5_000}
SPLIT_SALT = {"train": 0, "test": 1}  # train and test draw from different streams of the same seed
CHUNK = 256  # images rasterised at once: ~16k supersamples each, keeps temporaries near 100 MB
STREAM_MIN = (
    200_000  # from this size on, images are rendered on access instead of generated and cached (600 MB+)
)

FACTOR_RANGES: dict[str, tuple[float, float]] = {
    "hue": (0.0, 1.0),
    "saturation": (0.5, 1.0),
    "value": (0.6, 1.0),
    "scale": (0.5, 1.0),
    "angle": (0.0, 360.0),
    "x": (11.5, 20.5),
    "y": (11.5, 20.5),
    "bg_hue": (0.0, 1.0),
    "bg_value": (0.0, 0.35),
}

PALETTE_WOBBLE = 0.02  # with a palette, hues stay within this many turns of their entry's centre
COLOUR_PALETTE = 4  # the palette of ``shapes_colour``: red, yellow-green, cyan, violet centres

# Angle ranges in degrees: `uniform` is the default; `upright` keeps a canonical orientation (small wobble).
ORIENTATIONS: dict[str, tuple[float, float]] = {"uniform": (0.0, 360.0), "upright": (-20.0, 20.0)}

Mask = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _star(points: int, r_out: float, r_in: float) -> Mask:
    """Regular star/polygon with a vertex pointing up: turn each point onto its nearest spike, test one edge."""
    half = np.pi / points
    ax, bx, by = r_out, r_in * np.cos(half), r_in * np.sin(half)
    spike = np.pi / 2 + 2 * half * np.arange(points)  # spike directions
    cos_t, sin_t = np.cos(spike).astype(np.float32), np.sin(spike).astype(np.float32)

    def mask(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        k = np.rint((np.arctan2(v, u) - np.pi / 2) / (2 * half)).astype(np.int64) % points  # nearest spike
        c, s = cos_t[k], sin_t[k]
        qx, qy = c * u + s * v, np.abs(c * v - s * u)  # rotated so the spike lies on +x, mirrored to qy >= 0
        return (bx - ax) * qy - by * (qx - ax) >= 0  # on the origin's side of the spike edge

    return mask


def _box(u: np.ndarray, v: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


# Shapes in a unit frame (v points up, radius <= 1), with their rotational symmetry order.
SHAPES: dict[str, tuple[Mask, int]] = {
    "circle": (lambda u, v: u * u + v * v <= 0.8**2, 0),
    "square": (lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.68, 4),
    "triangle": (_star(3, 1.0, 0.5), 3),
    "plus": (lambda u, v: _box(u, v, -0.28, 0.28, -0.9, 0.9) | _box(u, v, -0.9, 0.9, -0.28, 0.28), 4),
    "star": (_star(5, 1.0, 0.45), 5),
    "hexagon": (_star(6, 0.92, 0.92 * np.cos(np.pi / 6)), 6),
    "semicircle": (lambda u, v: (u * u + (v + 0.35) ** 2 <= 0.9**2) & (v >= -0.35), 1),
    "arrow": (
        lambda u, v: _box(u, v, -0.2, 0.2, -0.95, 0.15) | ((v >= 0.15) & (np.abs(u) <= 0.75 * (0.95 - v))),
        1,
    ),
    "L": (lambda u, v: _box(u, v, -0.55, -0.12, -0.75, 0.75) | _box(u, v, -0.55, 0.55, -0.75, -0.33), 1),
    "T": (lambda u, v: _box(u, v, -0.68, 0.68, 0.3, 0.72) | _box(u, v, -0.21, 0.21, -0.8, 0.72), 1),
}
CLASSES: tuple[str, ...] = tuple(SHAPES)
SYMMETRY: dict[str, int] = {name: order for name, (_, order) in SHAPES.items()}


@dataclass(frozen=True)
class ShapeFactors:
    """The generative factors of one ``shapes`` item (see the module docstring for ranges)."""

    shape: str = "circle"
    hue: float = 0.0
    saturation: float = 1.0
    value: float = 1.0
    scale: float = 1.0
    angle: float = 0.0
    x: float = 16.0
    y: float = 16.0
    bg_hue: float = 0.0
    bg_value: float = 0.0


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV in [0, 1] to RGB floats in [0, 1], shape ``[..., 3]``."""
    h6 = np.mod(h, 1.0) * 6.0
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack(
        [np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    )
    return np.take_along_axis(table, i[None, ..., None], 0)[0]


def angle_mod_symmetry(angle: np.ndarray, symmetry: np.ndarray) -> np.ndarray:
    """Angle in degrees modulo ``360 / symmetry`` (0 where the symmetry is continuous, order 0)."""
    period = np.where(symmetry > 0, 360.0 / np.maximum(symmetry, 1), 1.0)
    return np.where(symmetry > 0, np.mod(angle, period), 0.0).astype(np.float32)


def _coverage(labels: np.ndarray, f: dict[str, np.ndarray]) -> np.ndarray:
    """Fraction of each pixel covered by the shape, float32 ``[B, 32, 32]``.

    Only a ``W x W`` window around each shape is sampled (every shape fits in its radius): ~half the work of
    the full image. Supersample centres are ``pixel + (k + 0.5) / SUPERSAMPLE``, exact in float32.
    """
    s, ss = IMAGE_SIZE, SUPERSAMPLE
    r = (f["scale"] * MAX_RADIUS_PX).astype(np.float32)  # [B] radius in pixels
    w = int(min(s, np.ceil(2 * r.max(initial=0.0)) + 2))
    ox = np.clip(np.floor(f["x"] - r), 0, s - w).astype(np.int64)  # window origin, pixels
    oy = np.clip(np.floor(f["y"] - r), 0, s - w).astype(np.int64)
    k = (np.arange(w * ss, dtype=np.float32) + 0.5) / ss
    theta = np.deg2rad(f["angle"]).astype(np.float32)
    cover = np.zeros((len(labels), s, s), np.float32)
    for c, name in enumerate(CLASSES):
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            continue
        dx = (ox[idx, None, None] + k[None, None, :]) - f["x"][idx, None, None]  # [b, 1, w*ss]
        dy = f["y"][idx, None, None] - (oy[idx, None, None] + k[None, :, None])  # [b, w*ss, 1], v points up
        cos, sin = np.cos(theta[idx, None, None]), np.sin(theta[idx, None, None])
        ri = r[idx, None, None]
        u, v = (cos * dx + sin * dy) / ri, (cos * dy - sin * dx) / ri  # undo the rotation: unit frame
        win = SHAPES[name][0](u, v).astype(np.float32).reshape(-1, w, ss, w, ss).mean(axis=(2, 4))
        rows = oy[idx, None, None] + np.arange(w)[None, :, None]
        cols = ox[idx, None, None] + np.arange(w)[None, None, :]
        cover[idx[:, None, None], rows, cols] = win
    return cover


def render_batch(labels: np.ndarray, factors: dict[str, np.ndarray]) -> np.ndarray:
    """Rasterise items from class indices and factor columns (the keys of :data:`FACTOR_RANGES`).

    Returns uint8 ``[N, 32, 32, 3]``; the same factors always give the same pixels.
    """
    f = {k: np.asarray(factors[k], np.float32) for k in FACTOR_RANGES}
    labels = np.asarray(labels, np.int64)
    out = np.empty((len(labels), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for lo in range(0, len(labels), CHUNK):
        sl = slice(lo, lo + CHUNK)
        fc = {k: v[sl] for k, v in f.items()}
        fg = hsv_to_rgb(fc["hue"], fc["saturation"], fc["value"])[:, None, None, :]  # [b, 1, 1, 3]
        bg = hsv_to_rgb(fc["bg_hue"], np.full_like(fc["bg_hue"], BG_SATURATION), fc["bg_value"])
        bg = bg[:, None, None, :]
        alpha = _coverage(labels[sl], fc)[..., None]  # [b, 32, 32, 1]
        out[sl] = np.clip(np.rint((bg + alpha * (fg - bg)) * 255.0), 0, 255).astype(np.uint8)
    return out


def render_shape(factors: ShapeFactors) -> np.ndarray:
    """One uint8 ``[32, 32, 3]`` image from its factors (for the app, tests and figures)."""
    if factors.shape not in SHAPES:
        raise ConfigError(f"unknown shape {factors.shape!r}; choose from {list(CLASSES)}.")
    cols = {k: np.array([v], np.float32) for k, v in asdict(factors).items() if k != "shape"}
    return render_batch(np.array([CLASSES.index(factors.shape)]), cols)[0]


def sample_factors(
    n: int, rng: np.random.Generator, orientation: str = "uniform", palette: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Class indices (exactly balanced, shuffled) and independent uniform factors for ``n`` items; with
    ``palette`` K > 0 both hues are then snapped to K evenly spaced palette hues (:func:`snap_to_palette`)."""
    ranges = {**FACTOR_RANGES, "angle": ORIENTATIONS[orientation]}
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    factors = {k: rng.uniform(lo, hi, n).astype(np.float32) for k, (lo, hi) in ranges.items()}
    if palette:
        for k in ("hue", "bg_hue"):
            factors[k] = snap_to_palette(factors[k], palette)
    return labels, factors


def palette_index(hue: np.ndarray, palette: int) -> np.ndarray:
    """The palette entry (0 .. K-1) a hue in [0, 1) falls in: entry j covers [j/K, (j+1)/K)."""
    return np.minimum((np.asarray(hue, np.float64) * palette).astype(np.int64), palette - 1)


def snap_to_palette(hue: np.ndarray, palette: int) -> np.ndarray:
    """Uniform hues moved to their palette entry's centre hue ``(j + 0.5) / K``, plus a wobble of at most
    :data:`PALETTE_WOBBLE` turns (kept from the original draw): K colours, never one per image."""
    j = palette_index(hue, palette)
    frac = np.asarray(hue, np.float64) * palette - j  # where the hue sat inside its entry, [0, 1)
    return ((j + 0.5) / palette + (frac - 0.5) * 2 * PALETTE_WOBBLE).astype(np.float32) % 1.0


class RenderedImages:
    """uint8 ``[N, 32, 32, 3]`` images rendered on access from their factors: an indexable stand-in for the image
    array of a large ``shapes`` split, so a million items never sit in memory (or on disk) at once.

    Indexing (an int, a slice or an integer array) renders just those items and returns a plain ``np.ndarray``,
    pixel-identical to the same rows of :func:`render_batch` over the whole split (each item depends only on its
    own factors). ``np.asarray`` of the whole object renders everything: stream with slices instead.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, labels: np.ndarray, factors: dict[str, np.ndarray]) -> None:
        self.labels = np.asarray(labels, np.int64)
        self.factors = {k: np.asarray(factors[k], np.float32) for k in FACTOR_RANGES}
        self.shape = (len(self.labels), IMAGE_SIZE, IMAGE_SIZE, 3)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):  # images[rows, ...]: render the rows, then index the rest
            return self[key[0]][(slice(None), *key[1:])]
        if isinstance(key, int | np.integer):
            return self[np.array([key])][0]
        ids = np.arange(len(self))[
            key
        ]  # slices, boolean masks and integer arrays, with numpy's bounds checks
        return render_batch(self.labels[ids], {k: v[ids] for k, v in self.factors.items()})

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _factors(
    n: int, seed: int, split: str, orientation: str, palette: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_SALT[split]]))
    return sample_factors(n, rng, orientation, palette)


def _meta(labels: np.ndarray, factors: dict[str, np.ndarray], palette: int = 0) -> dict[str, np.ndarray]:
    symmetry = np.array([SYMMETRY[c] for c in CLASSES], np.int64)[labels]
    out = {
        "shape": labels.copy(),
        **factors,
        "symmetry": symmetry,
        "angle_mod": angle_mod_symmetry(factors["angle"], symmetry),
    }
    if palette:  # the downstream colour task: which palette colour the shape has
        out["colour_class"] = palette_index(factors["hue"], palette)
    return out


def generate(n: int, seed: int, split: str, orientation: str = "uniform", palette: int = 0) -> Arrays:
    """Sample and render ``n`` items of ``split`` from ``seed`` (pure; no cache)."""
    labels, factors = _factors(n, seed, split, orientation, palette)
    return Arrays(images=render_batch(labels, factors), labels=labels, meta=_meta(labels, factors, palette))


def generate_lazy(n: int, seed: int, split: str, orientation: str = "uniform", palette: int = 0) -> Arrays:
    """:func:`generate` with the images as :class:`RenderedImages` (rendered on access): the same items, pixel for
    pixel, in O(n) small factor columns instead of ``n * 3 KB`` of pixels."""
    labels, factors = _factors(n, seed, split, orientation, palette)
    return Arrays(images=RenderedImages(labels, factors), labels=labels, meta=_meta(labels, factors, palette))


def load_shapes(
    split: str = "train",
    root: str | None = None,
    *,
    size: int | None = None,
    seed: int = 0,
    orientation: str = "uniform",
    palette: int = 0,
) -> ImageDataset:
    """The ``shapes`` dataset: generated once per (version, seed, size, split), then memory-mapped from cache;
    from :data:`STREAM_MIN` items on, the images are :class:`RenderedImages` (rendered on access, never cached).

    Args:
        split: ``train`` (default 20,000 items) or ``test`` (default 5,000 items).
        root: ignored (nothing is read from disk); accepted so every loader takes the same arguments.
        size: number of items instead of the split's default.
        seed: main seed; train and test use different streams derived from it.
        orientation: ``uniform`` (angles in [0, 360)) or ``upright`` (angles in [-20, 20)).
        palette: 0 (hues uniform on the circle) or K >= 2: shape and background hues from K palette colours
            (``colour_class`` in the metadata names the shape's); see :func:`load_shapes_colour`.
    """
    del root
    if split not in DEFAULT_SIZES:
        raise ConfigError(f"shapes has no split {split!r}; choose from {sorted(DEFAULT_SIZES)}.")
    n = DEFAULT_SIZES[split] if size is None else size
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"shapes size={n!r} must be a positive integer number of items.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"shapes seed={seed!r} must be a non-negative integer.")
    if orientation not in ORIENTATIONS:
        raise ConfigError(
            f"shapes orientation={orientation!r} is unknown; choose from {sorted(ORIENTATIONS)}."
        )
    if isinstance(palette, bool) or not isinstance(palette, int | np.integer) or palette == 1 or palette < 0:
        raise ConfigError(f"shapes palette={palette!r} must be 0 (continuous hues) or an integer >= 2.")
    parts = {"version": GENERATOR_VERSION, "seed": int(seed), "size": int(n)}
    if orientation != "uniform":  # the default keeps its cache key
        parts["orientation"] = orientation
    if palette:
        parts["palette"] = int(palette)
    name = "shapes" if orientation == "uniform" else f"shapes_{orientation}"
    if palette:  # the registered colour dataset keeps its registry name
        colour = palette == COLOUR_PALETTE and orientation == "uniform"
        name = "shapes_colour" if colour else f"{name}_palette{int(palette)}"
    if n >= STREAM_MIN:
        arrays = generate_lazy(int(n), int(seed), split, orientation, int(palette))
        return ImageDataset(name, split, arrays.images, arrays.labels, CLASSES, arrays.meta)
    arrays, _ = cached(
        name, split, parts, lambda: generate(int(n), int(seed), split, orientation, int(palette))
    )
    return ImageDataset(name, split, arrays.images, arrays.labels, CLASSES, arrays.meta)


def load_shapes_upright(
    split: str = "train", root: str | None = None, *, size: int | None = None, seed: int = 0
) -> ImageDataset:
    """``shapes`` with a canonical orientation (angles in [-20, 20)): the dataset ``shapes_upright``."""
    return load_shapes(split, root, size=size, seed=seed, orientation="upright")


def load_shapes_colour(
    split: str = "train", root: str | None = None, *, size: int | None = None, seed: int = 0
) -> ImageDataset:
    """The colour question's dataset ``shapes_colour``: ``shapes`` whose shape and background hues come from a
    palette of :data:`COLOUR_PALETTE` colours (± :data:`PALETTE_WOBBLE`), so a colour pair is shared by about
    1 / 16 of the images and cannot identify an instance, while ``colour_class`` (the shape's palette colour) is a
    downstream task that needs colour. Its recipe (``shapes_colour``) jitters hue at CIFAR strength (±0.1), which
    never moves a hue into the next palette entry."""
    return load_shapes(split, root, size=size, seed=seed, palette=COLOUR_PALETTE)


def rotation_ceiling(orientation: str = "upright", step: float = 0.01) -> float:
    """Best achievable 4-way (0/90/180/270 degree) rotation accuracy on a balanced ``shapes`` test set.

    A rotated image is the same as an unrotated one when the turn maps the shape onto itself (its symmetry) or
    lands inside the orientation range: per class, accuracy = 1/4 * integral of max_r f_r(theta) over the
    symmetry period, with f_r the density of the observed angle given rotation r (Bayes-optimal classifier).
    ``uniform`` gives 0.25 (chance); ``upright`` about 0.64.
    """
    lo, hi = ORIENTATIONS[orientation]
    accs = []
    for order in SYMMETRY.values():
        period = 360.0 / order if order else None
        if period is None:  # a circle: every rotation gives the same image
            accs.append(0.25)
            continue
        theta = np.arange(0.0, period, step)
        dens = []
        for r in (0.0, 90.0, 180.0, 270.0):
            shifts = np.arange(np.floor((lo + r - period) / period), np.ceil((hi + r) / period) + 1)
            x = theta[:, None] + shifts[None, :] * period  # every unwrapped angle that shows as theta
            dens.append(((x >= lo + r) & (x < hi + r)).sum(axis=1) / (hi - lo))
        accs.append(0.25 * float(np.max(dens, axis=0).sum() * step))
    return float(np.mean(accs))
