"""Colour probe targets from the images: HSV as colorsys, circular mean hue on constructed images."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from engine.eval.colour import colour_stats, colour_targets, hsv


def test_hsv_matches_colorsys():
    px = np.random.default_rng(0).integers(0, 256, (2000, 3), dtype=np.uint8)
    h, s, v = hsv(px)
    ref = np.array([colorsys.rgb_to_hsv(*(p / 255.0)) for p in px])
    np.testing.assert_allclose(np.c_[h, s, v], ref, atol=1e-12)


def test_mean_hue_is_circular_and_grey_has_none():
    imgs = np.zeros((4, 4, 4, 3), np.uint8)
    imgs[0, ..., 0] = 255  # red: hue 0
    imgs[1, :2, :, 0] = 255  # half red, half blue (hue 2/3): the circular mean is magenta, 5/6 (not 1/3)
    imgs[1, 2:, :, 2] = 255
    imgs[2] = 128  # grey: no hue
    imgs[3, ..., 1] = 200  # green at saturation 1: hue 1/3
    hue, defined, sat = colour_stats(imgs)
    assert hue[0] == pytest.approx(0.0) and hue[1] == pytest.approx(5 / 6) and hue[3] == pytest.approx(1 / 3)
    assert list(defined) == [True, True, False, True]
    assert list(sat) == pytest.approx([1.0, 1.0, 0.0, 1.0])
    t = colour_targets(imgs)
    assert t["image_hue"][2] == 1.0 and t["image_saturation"][2] is None  # hue is circular, period 1
