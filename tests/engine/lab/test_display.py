"""engine.lab.display: any image becomes one a page can draw at any width (extreme aspects letterboxed)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from engine.lab.display import displayable, letterbox, png_data_uri, shrink, to_uint8_hwc


@pytest.mark.parametrize("hw", [(10, 10_000), (10_000, 10), (1, 1), (3, 2000), (2000, 1), (32, 32), (64, 32)])
def test_every_shape_is_drawable_at_any_width(hw):
    img = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    out = displayable(img)
    h, w = out.shape[:2]
    assert out.dtype == np.uint8 and out.shape[2] == 3
    assert max(h, w) <= 512 and max(h, w) / min(h, w) <= 4.0
    for width in (56, 96, 160):  # what the pages pass to st.image: the drawn height is at least one pixel
        assert h * width / w >= 1


def test_images_within_bounds_are_unchanged():
    img = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert np.array_equal(displayable(img), img)


def test_letterbox_centres_the_image_on_grey():
    img = np.zeros((2, 20, 3), np.uint8)
    out = letterbox(img, max_aspect=4.0, fill=128)
    assert out.shape == (5, 20, 3)
    assert np.array_equal(out[1:3], img) and (out[0] == 128).all() and (out[3:] == 128).all()


def test_shrink_keeps_aspect_and_picks_source_pixels():
    img = np.arange(1000 * 10).reshape(1000, 10, 1).astype(np.uint8)
    out = shrink(img, 100)
    assert out.shape == (100, 1, 1)
    assert set(np.unique(out)) <= set(np.unique(img))


def test_float_channel_first_and_gray_inputs():
    chw = np.full((3, 4, 5), 0.5, np.float32)
    assert to_uint8_hwc(chw).shape == (4, 5, 3) and to_uint8_hwc(chw)[0, 0, 0] == 128
    assert to_uint8_hwc(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert to_uint8_hwc(np.full((4, 5, 3), 2.0)).max() == 255  # out-of-range floats are clipped
    with pytest.raises(ValueError, match="not an image array"):
        to_uint8_hwc(np.zeros((2, 3, 4, 5)))


def test_png_data_uri_decodes_to_the_displayable_image():
    img = np.random.default_rng(0).integers(0, 256, (3, 40, 7), dtype=np.uint8)  # channel-first, tall
    uri = png_data_uri(img)
    assert uri.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    np.testing.assert_array_equal(back, displayable(img))  # lossless, the same pixels st.image would get
