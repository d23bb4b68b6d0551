"""Identifiability ceilings: the Bayes-optimal accuracy of each pretext task on ``shapes`` / ``shapes_upright``.

A pretext label is only learnable as far as the transformed image reveals it: a circle turned by 90 degrees, or a
square mirrored, is the same image. With uniform labels, the best possible accuracy is
``E[max_k p(k | image)]`` over the generator's images; :func:`pretext_ceiling` gives it per task of
:data:`engine.augment.pretext.PRETEXT_TASKS` (see :data:`CEILING_NOTES` for each task's reasoning), averaged over
the ten classes (the test set is exactly balanced). Every other factor (position, colours, scale) has a
distribution the transforms leave unchanged (position ranges are symmetric about the image centre), so only the
ones below decide.

* ``rotation``, ``hflip``, ``vflip`` (geometric): an image shows a class in a pose ``R_theta M^chi`` (turn by
  theta, mirrored chi times). A label maps ``(theta, chi)`` to ``(a theta + b, a chi)`` (quarter turn k:
  ``a = 1, b = 90 k``; hflip: ``a = -1, b = 0``; vflip: ``a = -1, b = 180``). The pose is seen only modulo the
  shape's rotational symmetry ``360 / order`` degrees, and chi is invisible for shapes with a mirror axis (all but
  ``L``). Per class, accuracy = ``1/K sum_chi integral max_k f_k(theta, chi) dtheta`` with f_k the density of the
  observed pose under label k, integrated on a grid (as :func:`engine.data.shapes.rotation_ceiling`).
* ``invert``, ``grayscale``, ``blur``: 1.0, by construction of the generator (see :data:`CEILING_NOTES`).
* ``jigsaw``: two labels give the same image exactly when they differ by a swap of identical patches, which here
  are the quadrants the shape does not touch (plain background). With ``E`` such empty quadrants the posterior is
  uniform over ``|E|!`` labels, so the ceiling is ``E[1 / |E|!]``. It is computed by enumerating the generator's
  factors on a grid — class, scale (8 midpoints of [0.5, 1]), angle (5 degree steps over one symmetry period, or
  5 midpoints of the upright range), centre offset (48 x 48 midpoints of [-4.5, 4.5]^2) — testing each quadrant
  against the shape's outline, sampled at 0.01 of its radius. A quadrant counts as touched when the outline
  passes its first supersample point (1/8 px inside its edge), as the renderer's 4x4 supersampling sees it; a
  sliver thinner than the sample spacing elsewhere can still differ (agreement with rendered images ~0.002).

Values (``shapes`` / ``shapes_upright``): hflip 0.55 / 0.55, vflip 0.55 / 0.79, rotation 0.25 / 0.63,
jigsaw 0.98 / 0.98, invert, grayscale and blur 1.0.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from engine.augment.pretext import PRETEXT_TASKS
from engine.core.errors import ConfigError
from engine.data.shapes import (
    FACTOR_RANGES,
    IMAGE_SIZE,
    MAX_RADIUS_PX,
    ORIENTATIONS,
    SHAPES,
    SUPERSAMPLE,
    SYMMETRY,
)

FIRST_SAMPLE = 0.5 / SUPERSAMPLE  # the renderer's first supersample point lies this far inside a quadrant

# (a, b) per label: the pose (theta, chi) becomes (a theta + b, a chi); a = -1 mirrors.
GEOMETRIC: dict[str, tuple[tuple[int, float], ...]] = {
    "rotation": ((1, 0.0), (1, 90.0), (1, 180.0), (1, 270.0)),
    "hflip": ((1, 0.0), (-1, 0.0)),
    "vflip": ((1, 0.0), (-1, 180.0)),
}

CEILING_NOTES: dict[str, str] = {
    "rotation": "a turn is invisible up to each shape's rotational symmetry; uniform angles hide it completely",
    "hflip": "a mirror is invisible for every shape with a mirror axis (all but L), whose mirror is a turn",
    "vflip": "as hflip, but on upright shapes a top-bottom mirror of an odd-symmetric shape turns it upside down",
    "invert": "the background's brightest channel is <= 0.35 before inversion and >= 0.65 after",
    "grayscale": "the shape's colour always has chroma (max - min channel) value * saturation >= 0.3",
    "blur": "generated edges are sharp (anti-aliased over one pixel); each label widens them by its own sigma",
    "jigsaw": "patches the shape does not touch are identical background: swapping them cannot be seen",
}


def _unit_grid(step: float) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints of a square grid over the unit frame [-1, 1]^2 (float32, as the renderer)."""
    t = (np.arange(-1.0, 1.0, step) + step / 2).astype(np.float32)
    return np.meshgrid(t, t)


@cache
def mirror_symmetric(shape: str, step: float = 0.005) -> bool:
    """Whether the shape equals its left-right mirror in its own frame (then a mirror is a turn)."""
    u, v = _unit_grid(step)
    mask = SHAPES[shape][0]
    return float(np.mean(mask(u, v) != mask(-u, v))) < 1e-3  # rounding at exact ties only


def _pose_accuracy(
    order: int, chiral: bool, labels: tuple[tuple[int, float], ...], lo: float, hi: float
) -> float:
    """Bayes accuracy over the observed pose of one class (see the module docstring)."""
    k = len(labels)
    if order == 0:  # continuous symmetry: only chirality could show
        groups: dict[int, int] = {}
        for a, _ in labels:
            groups[a if chiral else 1] = groups.get(a if chiral else 1, 0) + 1
        return len(groups) / k
    period, step = 360.0 / order, 0.01
    theta = np.arange(0.0, period, step) + step / 2
    total = 0.0
    for chi in (1, -1) if chiral else (1,):
        dens = []
        for a, b in labels:
            if chiral and a != chi:
                dens.append(np.zeros_like(theta))
                continue
            # unwrapped angles t + m period that label (a, b) produces from some theta in [lo, hi)
            shifts = np.arange(
                np.floor((min(a * lo, a * hi) + b) / period) - 1,
                np.ceil((max(a * lo, a * hi) + b) / period) + 2,
            )
            x = theta[:, None] + shifts[None, :] * period
            src = a * (x - b)  # the generated angle that lands there
            dens.append(((src >= lo) & (src < hi)).sum(axis=1) / (hi - lo))
        total += float(np.max(dens, axis=0).sum() * step)
    return total / k


def _geometric_ceiling(task: str, orientation: str) -> float:
    lo, hi = ORIENTATIONS[orientation]
    accs = [
        _pose_accuracy(SYMMETRY[name], not mirror_symmetric(name), GEOMETRIC[task], lo, hi) for name in SHAPES
    ]
    return float(np.mean(accs))


def _outline(shape: str, step: float = 0.01) -> np.ndarray:
    """Points of the shape (unit frame, v up) that have an outside 4-neighbour: ``[P, 2]``."""
    u, v = _unit_grid(step)
    inside = np.pad(SHAPES[shape][0](u, v), 1)
    core = inside[1:-1, 1:-1]
    edge = core & ~(inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:])
    return np.stack([u[edge], v[edge]], axis=1).astype(np.float64)


def _empty_quadrants(points: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Empty-quadrant counts ``[A, A]`` for shape points ``[P, 2]`` (pixels from the centre, x right, y down)
    with the centre at ``16 + (offsets[i], offsets[j])`` (x, y).

    Quadrant (sx, sy) in {-1, 1}^2 holds the pixels with ``sx (x - 16) > 0`` and ``sy (y - 16) > 0``: it is
    touched iff some point has ``sx p_x > -sx a + e`` and ``sy p_y > -sy b + e`` (``e`` = :data:`FIRST_SAMPLE`),
    i.e. iff the highest ``sy p_y`` among points right of ``-sx a + e`` (sx-mirrored frame) exceeds ``-sy b + e``.
    """
    touched = np.zeros((len(offsets), len(offsets)), np.int64)
    for sx in (-1, 1):
        for sy in (-1, 1):
            px, py = sx * points[:, 0], sy * points[:, 1]
            right = px[None, :] > -sx * offsets[:, None] + FIRST_SAMPLE  # [A, P]
            top = np.where(right, py[None, :], -np.inf).max(axis=1)  # [A] over the x offset
            touched += top[:, None] > -sy * offsets[None, :] + FIRST_SAMPLE  # [A (x), A (y)]
    return 4 - touched


def _jigsaw_class(shape: str, orientation: str) -> float:
    lo, hi = ORIENTATIONS[orientation]
    order = SYMMETRY[shape]
    if orientation == "uniform":  # one symmetry period covers every pose
        period = 360.0 / order if order else 5.0
        angles = np.arange(0.0, period, 5.0) + 2.5
    else:
        angles = lo + (np.arange(5) + 0.5) * (hi - lo) / 5
    s_lo, s_hi = FACTOR_RANGES["scale"]
    scales = s_lo + (np.arange(8) + 0.5) * (s_hi - s_lo) / 8
    c_lo, c_hi = FACTOR_RANGES["x"]
    half = IMAGE_SIZE / 2
    offsets = c_lo - half + (np.arange(48) + 0.5) * (c_hi - c_lo) / 48
    unit = _outline(shape)
    weight = np.array([1.0 / math.factorial(n) for n in range(5)])
    accs = []
    for angle in np.deg2rad(angles):
        c, s = math.cos(angle), math.sin(angle)
        # the renderer's inverse: a unit-frame point (u, v) sits at dx = c u - s v, dy_up = s u + c v
        base = np.stack([c * unit[:, 0] - s * unit[:, 1], -(s * unit[:, 0] + c * unit[:, 1])], axis=1)
        for scale in scales:
            empty = _empty_quadrants(base * scale * MAX_RADIUS_PX, offsets)
            accs.append(weight[empty].mean())
    return float(np.mean(accs))


@cache
def pretext_ceiling(task: str, orientation: str = "upright") -> float:
    """Best achievable accuracy of pretext ``task`` on a balanced ``shapes`` test set of ``orientation``."""
    if task not in PRETEXT_TASKS:
        raise ConfigError(f"unknown pretext task {task!r}; choose from {sorted(PRETEXT_TASKS)}.")
    if orientation not in ORIENTATIONS:
        raise ConfigError(
            f"shapes orientation={orientation!r} is unknown; choose from {sorted(ORIENTATIONS)}."
        )
    if task in GEOMETRIC:
        return _geometric_ceiling(task, orientation)
    if task == "jigsaw":
        return float(np.mean([_jigsaw_class(name, orientation) for name in SHAPES]))
    return 1.0


def ceilings(orientation: str = "upright") -> dict[str, float]:
    """Every task's ceiling on ``shapes`` of ``orientation``, in registry order (chance is ``1 / n_labels``)."""
    return {name: pretext_ceiling(name, orientation) for name in PRETEXT_TASKS}
