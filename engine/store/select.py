"""Selections on a 2-D map, computed over the FULL coordinate set (not over the points a browser happens to draw).

A map of a million items is drawn as a density image, so a box or lasso drawn on it selects by geometry: the ids
are the rows of ``xy`` inside the region. Plotly reports the regions in Streamlit's selection event as
``{"box": [{"x": [x0, x1], "y": [y0, y1]}], "lasso": [{"x": [...], "y": [...]}], "points": [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Range = tuple[float, float]


def box_ids(xy: np.ndarray, x_range: Sequence[float], y_range: Sequence[float]) -> np.ndarray:
    """Sorted int64 ids of the rows of ``xy`` [N, 2] with x in ``x_range`` and y in ``y_range`` (bounds
    included, either order)."""
    x0, x1 = sorted(float(v) for v in x_range)
    y0, y1 = sorted(float(v) for v in y_range)
    x, y = xy[:, 0], xy[:, 1]
    return np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).astype(np.int64)


def lasso_ids(xy: np.ndarray, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """Sorted int64 ids of the rows of ``xy`` [N, 2] inside the polygon with vertices (xs[i], ys[i]) (closed
    automatically; even-odd rule, so a self-crossing lasso excludes the doubly-wound parts, as Plotly draws it).

    Only the points in the polygon's bounding box are tested, one vectorised pass per edge.
    """
    px_, py_ = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    if len(px_) < 3:
        return np.zeros(0, np.int64)
    cand = box_ids(xy, (px_.min(), px_.max()), (py_.min(), py_.max()))
    x, y = xy[cand, 0].astype(np.float64), xy[cand, 1].astype(np.float64)
    inside = np.zeros(len(cand), bool)
    for xi, yi, xj, yj in zip(px_, py_, np.roll(px_, 1), np.roll(py_, 1)):
        if yi == yj:
            continue  # a horizontal edge is never crossed by the horizontal ray
        crosses = ((yi > y) != (yj > y)) & (x < (xj - xi) * (y - yi) / (yj - yi) + xi)
        inside ^= crosses
    return cand[inside]


def region_ids(xy: np.ndarray, selection: Mapping[str, Any] | None) -> np.ndarray | None:
    """Ids inside the union of the box and lasso regions of a Plotly selection (sorted int64), or None when the
    selection has no region (nothing drawn, or only clicked points)."""
    if not selection:
        return None
    parts = [box_ids(xy, b["x"], b["y"]) for b in selection.get("box") or [] if _has(b)]
    parts += [lasso_ids(xy, a["x"], a["y"]) for a in selection.get("lasso") or [] if _has(a)]
    if not parts:
        return None
    return np.unique(np.concatenate(parts)).astype(np.int64)


def region_bounds(selection: Mapping[str, Any] | None) -> tuple[Range, Range] | None:
    """The bounding box ((x0, x1), (y0, y1)) of every box and lasso region of a selection, or None."""
    if not selection:
        return None
    xs, ys = [], []
    for r in [*(selection.get("box") or []), *(selection.get("lasso") or [])]:
        if _has(r):
            xs += [float(v) for v in r["x"]]
            ys += [float(v) for v in r["y"]]
    if not xs or min(xs) == max(xs) or min(ys) == max(ys):
        return None
    return (min(xs), max(xs)), (min(ys), max(ys))


def extent(xy: np.ndarray, pad: float = 0.02) -> tuple[Range, Range]:
    """((x0, x1), (y0, y1)): the bounding box of ``xy`` widened by ``pad`` of its size on each side (never empty)."""
    if len(xy) == 0:
        return (0.0, 1.0), (0.0, 1.0)
    lo, hi = xy.min(axis=0).astype(np.float64), xy.max(axis=0).astype(np.float64)
    span = np.maximum(hi - lo, 1e-9)
    lo, hi = lo - pad * span, hi + pad * span
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))


def _has(region: Any) -> bool:
    return isinstance(region, Mapping) and len(region.get("x") or []) > 0 and len(region.get("y") or []) > 0
