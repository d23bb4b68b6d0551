"""Density images of a map's FULL coordinate set (datashader), for maps too large to draw point by point.

Every item is binned into the pixels of a ``width x height`` canvas over the view ``x_range x y_range``
(datashader's aggregation: pixel ``j`` covers ``[x0 + j dx, x0 + (j + 1) dx)``, ``dx = (x1 - x0) / width``, the
same for y), then shaded: by category, each pixel mixes the colours of its items' categories with opacity rising with
the count (histogram-equalised); by value, each pixel takes the colour of its items' mean value on a fixed span.
A coarser grid of the same view carries what hover shows for every cell: how many items, and the most common
category (or the mean value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import datashader as ds
import datashader.transfer_functions as tf
import numpy as np
import pandas as pd
from PIL import Image

Range = tuple[float, float]
HOVER_GRID = (64, 48)  # cells across, down


@dataclass(frozen=True)
class DensityMap:
    """A shaded image of every item in a view, and the per-cell numbers hover shows.

    Attributes:
        image: RGBA, ``height x width``; its top row is the largest y (as drawn on a plot).
        x_range, y_range: the view it covers.
        counts: int64 ``[gh, gw]`` items per hover cell, row 0 = smallest y.
        cell_x, cell_y: centres of the hover cells (``[gw]``, ``[gh]``).
        top: int64 ``[gh, gw]`` most common category per cell (-1 where empty), or None (colouring by value).
        mean: float64 ``[gh, gw]`` mean value per cell (NaN where empty), or None (colouring by category).
        n_in_view: items inside the view.
    """

    image: Image.Image
    x_range: Range
    y_range: Range
    counts: np.ndarray
    cell_x: np.ndarray
    cell_y: np.ndarray
    top: np.ndarray | None
    mean: np.ndarray | None
    n_in_view: int


def _frame(xy: np.ndarray, codes: np.ndarray | None, n_codes: int, values: np.ndarray | None) -> pd.DataFrame:
    cols = {"x": np.asarray(xy[:, 0], np.float64), "y": np.asarray(xy[:, 1], np.float64)}
    if codes is not None:
        cols["c"] = pd.Categorical.from_codes(np.asarray(codes, np.int64), categories=list(range(n_codes)))
    if values is not None:
        cols["v"] = np.asarray(values, np.float64)
    return pd.DataFrame(cols)


def _canvas(x_range: Range, y_range: Range, width: int, height: int) -> ds.Canvas:
    return ds.Canvas(plot_width=width, plot_height=height, x_range=tuple(x_range), y_range=tuple(y_range))


def category_counts(
    xy: np.ndarray, codes: np.ndarray, n_codes: int, x_range: Range, y_range: Range, width: int, height: int
) -> np.ndarray:
    """int64 ``[height, width, n_codes]``: items of each category per pixel (row 0 = smallest y)."""
    agg = _canvas(x_range, y_range, width, height).points(
        _frame(xy, codes, n_codes, None), "x", "y", ds.by("c", ds.count())
    )
    return np.asarray(agg.values, np.int64)


def _hex(colour: str) -> str:
    """``#rrggbb`` from ``#rrggbb`` or ``rgb(r, g, b)`` (Plotly's colour scales)."""
    if colour.startswith("rgb"):
        r, g, b = (int(float(v)) for v in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3])
        return f"#{r:02x}{g:02x}{b:02x}"
    return colour


def density_map(
    xy: np.ndarray,
    x_range: Range,
    y_range: Range,
    *,
    codes: np.ndarray | None = None,
    colours: Sequence[str] | None = None,
    values: np.ndarray | None = None,
    cmap: Sequence[str] | None = None,
    span: Range | None = None,
    width: int = 640,
    height: int = 480,
    grid: tuple[int, int] = HOVER_GRID,
) -> DensityMap:
    """The :class:`DensityMap` of every row of ``xy`` [N, 2] in the view.

    Colour by category (``codes`` [N] int in [0, len(colours)), ``colours`` one CSS colour per category) or by
    value (``values`` [N] float, ``cmap`` a list of colours from low to high, ``span`` the values at its ends:
    default the min and max of the finite values).
    """
    if (codes is None) == (values is None):
        raise ValueError("density_map: colour by codes (with colours) or by values (with cmap), not both")
    cvs = _canvas(x_range, y_range, width, height)
    gw, gh = grid
    coarse = _canvas(x_range, y_range, gw, gh)
    if codes is not None:
        colours = [_hex(c) for c in (colours or [])]
        df = _frame(xy, codes, len(colours), None)
        agg = cvs.points(df, "x", "y", ds.by("c", ds.count()))
        img = tf.shade(agg, color_key=colours, how="eq_hist", min_alpha=60)
        per = np.asarray(coarse.points(df, "x", "y", ds.by("c", ds.count())).values, np.int64)
        counts = per.sum(axis=2)
        top, mean = np.where(counts > 0, per.argmax(axis=2), -1), None
    else:
        v = np.asarray(values, np.float64)
        finite = v[np.isfinite(v)]
        if span is None:
            span = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if span[0] == span[1]:
            span = (span[0] - 0.5, span[1] + 0.5)
        df = _frame(xy, None, 0, v)
        agg = cvs.points(df, "x", "y", ds.mean("v"))
        img = tf.shade(agg, cmap=[_hex(c) for c in (cmap or ["#440154", "#fde725"])], how="linear", span=span)
        counts = np.asarray(coarse.points(df, "x", "y", ds.count()).values, np.int64)
        top, mean = None, np.asarray(coarse.points(df, "x", "y", ds.mean("v")).values, np.float64)
    img = tf.dynspread(img, threshold=0.5, max_px=2)  # sparse pixels grow to stay visible; dense ones do not
    (x0, x1), (y0, y1) = x_range, y_range
    x, y = xy[:, 0], xy[:, 1]
    n_in = int(((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).sum())
    return DensityMap(
        image=img.to_pil(),
        x_range=(float(x0), float(x1)),
        y_range=(float(y0), float(y1)),
        counts=counts,
        cell_x=x0 + (np.arange(gw) + 0.5) * (x1 - x0) / gw,
        cell_y=y0 + (np.arange(gh) + 0.5) * (y1 - y0) / gh,
        top=top,
        mean=mean,
        n_in_view=n_in,
    )
