"""preprocess: the one model-input transform, equal to the augmentation pipeline's identity view for any shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.augment import apply, identity_params, identity_view, preprocess
from engine.core.errors import ConfigError
from engine.lab.image import SliderValues, lab_views
from engine.methods import build_method


def _images(hw, n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *hw, 3), dtype=np.uint8)


@pytest.mark.parametrize("hw", [(32, 32), (64, 32), (32, 64), (7, 5), (96, 96)])
@pytest.mark.parametrize("size", [32, 16])
def test_identity_view_equals_preprocess_exactly(hw, size):
    im = _images(hw)
    t = torch.from_numpy(im).permute(0, 3, 1, 2)
    out = preprocess(im, size)
    assert out.shape == (3, 3, size, size) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, apply(t, identity_params(3, hw, size)))
    assert torch.equal(out, identity_view(t, size))
    assert torch.equal(out, preprocess(t, size))  # numpy [B, H, W, 3] and tensor [B, 3, H, W] agree
    assert torch.equal(out[:1], preprocess(im[0], size))  # a single image without B


def test_no_resize_is_the_plain_scaled_image():
    im = _images((32, 32))
    out = preprocess(im, 32)
    assert torch.equal(out, torch.from_numpy(im).permute(0, 3, 1, 2).float() / 255)
    assert out.is_contiguous(memory_format=torch.channels_last)  # the layout stores are embedded from


def test_read_only_memmap_and_bad_shapes(tmp_path):
    np.save(tmp_path / "x.npy", _images((8, 8)))
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert preprocess(mm, 8).shape == (3, 3, 8, 8)
    with pytest.raises(ConfigError, match=r"\[B, H, W, 3\]"):
        preprocess(np.zeros((2, 8, 8), np.uint8), 8)
    with pytest.raises(ConfigError, match=r"\[B, 3, H, W\]"):
        preprocess(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), 8)


@pytest.mark.parametrize("hw", [(64, 32), (32, 64), (7, 5), (32, 32)])
def test_lab_identity_view_moves_no_embedding(hw):

    torch.manual_seed(0)
    model = build_method("equimod", width=0.0625, image_size=32).eval()
    image = _images(hw, n=1)[0]
    for space in ("backbone", "equivariant"):
        d = lab_views(model, image, [SliderValues(), SliderValues(crop_scale=0.5)], space)
        assert d.norm[0] == 0.0 and np.array_equal(d.z[0], d.z0[0]) and d.norm[1] > 0
        with torch.no_grad():
            want = model.embed(preprocess(image, 32))[space][0].numpy()
        np.testing.assert_allclose(d.z0[0], want, atol=1e-5)
