"""Selections over the full coordinate set and the density image of a map, on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from engine.store.density import density_map
from engine.store.select import box_ids, extent, lasso_ids, region_bounds, region_ids

# A 10 x 10 lattice at integer coordinates: point id = 10 * y + x.
GRID = np.array([(x, y) for y in range(10) for x in range(10)], np.float32)


def test_box_ids_are_the_lattice_points_inside_bounds_included_either_order():
    want = [10 * y + x for y in range(3, 6) for x in range(2, 5)]
    np.testing.assert_array_equal(box_ids(GRID, (2, 4), (3, 5)), want)
    np.testing.assert_array_equal(box_ids(GRID, (4.5, 1.5), (5.5, 2.5)), want)  # reversed, between lattice
    assert box_ids(GRID, (20, 30), (0, 9)).size == 0


def test_lasso_ids_triangle_and_concave_polygon():
    # The triangle with legs on x = -0.5 and y = -0.5 and hypotenuse x + y = 8.5 holds the lattice points with
    # x + y <= 8 (none lies on an edge).
    xs, ys = [-0.5, 9.0, -0.5], [-0.5, -0.5, 9.0]
    want = [10 * y + x for y in range(10) for x in range(10) if x + y <= 8]
    np.testing.assert_array_equal(lasso_ids(GRID, xs, ys), want)
    # A U shape: the columns x in {1, 2} and {6, 7} for y in 1..7, joined by the row y in {1, 2}; the notch
    # between them (x 3..5, y 3..7) is outside.
    ux = [0.5, 7.5, 7.5, 5.5, 5.5, 2.5, 2.5, 0.5]
    uy = [0.5, 0.5, 7.5, 7.5, 2.5, 2.5, 7.5, 7.5]
    got = set(lasso_ids(GRID, ux, uy).tolist())
    want_u = {10 * y + x for y in range(1, 8) for x in range(1, 8) if y <= 2 or x <= 2 or x >= 6}
    assert got == want_u
    assert lasso_ids(GRID, [0, 1], [0, 1]).size == 0  # fewer than 3 vertices: no area


def test_region_ids_unions_boxes_and_lassos_of_a_plotly_selection():
    sel = {
        "points": [{"customdata": 99}],  # clicked points do not count once a region is drawn
        "box": [{"xref": "x", "yref": "y", "x": [0, 1], "y": [0, 0]}],
        "lasso": [{"xref": "x", "yref": "y", "x": [7.5, 9.5, 9.5, 7.5], "y": [7.5, 7.5, 9.5, 9.5]}],
    }
    np.testing.assert_array_equal(region_ids(GRID, sel), [0, 1, 88, 89, 98, 99])
    assert region_ids(GRID, {"points": [{"customdata": 3}], "box": [], "lasso": []}) is None
    assert region_ids(GRID, None) is None
    assert region_bounds(sel) == ((0.0, 9.5), (0.0, 9.5))
    assert region_bounds({"box": [{"x": [1, 1], "y": [0, 2]}]}) is None  # a zero-width box is no view


def test_extent_pads_the_bounding_box():
    np.testing.assert_allclose(extent(GRID, pad=0.1), [(-0.9, 9.9), (-0.9, 9.9)])


def test_density_counts_every_item_per_cell_and_colours_by_class():
    # 1,000 items at the centre of cell (1, 2) of a 4 x 4 hover grid over [0, 4)^2, class 0; 10 at cell (3, 0),
    # class 1; 5 more of class 1 in cell (1, 2). Outside the view: 7 items that must not be counted.
    a = np.tile([[1.5, 2.5]], (1000, 1))
    b = np.tile([[3.5, 0.5]], (10, 1))
    c = np.tile([[1.5, 2.5]], (5, 1))
    out = np.tile([[9.0, 9.0]], (7, 1))
    xy = np.concatenate([a, b, c, out]).astype(np.float32)
    codes = np.array([0] * 1000 + [1] * 10 + [1] * 5 + [0] * 7)
    dm = density_map(
        xy,
        (0.0, 4.0),
        (0.0, 4.0),
        codes=codes,
        colours=["#ff0000", "rgb(0, 0, 255)"],
        width=8,
        height=8,
        grid=(4, 4),
    )
    want = np.zeros((4, 4), np.int64)
    want[2, 1], want[0, 3] = 1005, 10  # row = y cell (0 = smallest y), column = x cell
    np.testing.assert_array_equal(dm.counts, want)
    assert dm.top[2, 1] == 0 and dm.top[0, 3] == 1 and (dm.top[want == 0] == -1).all()
    assert dm.n_in_view == 1015 and dm.image.size == (8, 8)
    np.testing.assert_allclose(dm.cell_x, [0.5, 1.5, 2.5, 3.5])
    rgba = np.asarray(dm.image)  # top row = largest y: the class-1 cell (y in [0, 1)) is in the bottom rows
    r, g, b_, alpha = rgba[7, 7]
    assert alpha > 0 and b_ > r and g == 0  # pure class 1: blue
    assert rgba[0, 0, 3] == 0  # an empty corner is transparent


def test_density_by_value_takes_the_cell_mean():
    xy = np.array([[0.5, 0.5], [0.5, 0.5], [1.5, 1.5]], np.float32)
    dm = density_map(
        xy,
        (0.0, 2.0),
        (0.0, 2.0),
        values=np.array([1.0, 3.0, 10.0]),
        span=(0.0, 10.0),
        width=2,
        height=2,
        grid=(2, 2),
    )
    np.testing.assert_array_equal(dm.counts, [[2, 0], [0, 1]])
    np.testing.assert_allclose(dm.mean[0, 0], 2.0)
    np.testing.assert_allclose(dm.mean[1, 1], 10.0)
    assert np.isnan(dm.mean[0, 1]) and dm.top is None
    with pytest.raises(ValueError, match="not both"):
        density_map(xy, (0, 2), (0, 2))
