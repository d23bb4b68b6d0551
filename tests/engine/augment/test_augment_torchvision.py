"""Each op of engine.augment.apply against torchvision.transforms.v2.functional applied image by image.

Inputs are float images in [0, 1]; torchvision runs on the same floats, so differences are only float rounding
(summation order in the matmul resize vs torch's separable kernel, hsv round trips): tolerance 1e-5 unless noted.
"""

import dataclasses

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from engine.augment import RECIPES, apply, identity_params, sample_params

ATOL = 1e-5
HW = (32, 32)


def _images(n=16, hw=HW, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *hw, generator=g)


def _only(n, **fields):
    return dataclasses.replace(identity_params(n, HW, 32), **fields)


def _check(ours, theirs, atol=ATOL):
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() <= atol


def test_resized_crop_and_flip_match_torchvision():
    x = _images()
    for mode, tv_mode in (("bicubic", InterpolationMode.BICUBIC), ("bilinear", InterpolationMode.BILINEAR)):
        for size in (32, 16):  # 32: upsampling the crop; 16: some crops are downscaled (antialias path)
            r = dataclasses.replace(RECIPES["simclr"], size=size)
            p = sample_params(r, len(x), HW, torch.Generator().manual_seed(1))
            ours = apply(x, p, interpolation=mode)
            ref = []
            for k in range(len(x)):
                t, left, h, w = (int(v) for v in p.crop[k].tolist())
                y = TF.resized_crop(x[k], t, left, h, w, [size, size], interpolation=tv_mode, antialias=True)
                ref.append(TF.hflip(y) if p.flip[k] else y)
            # colour ops are off in this comparison only if the sampled jitter/gray rows are excluded
            keep = ~(p.jitter | p.gray)
            theirs = torch.stack(ref).clamp(0, 1)  # our pipeline clamps bicubic overshoot to [0, 1]
            _check(ours[keep], theirs[keep])


def test_colour_ops_match_torchvision():
    x = _images()
    n = len(x)
    g = torch.Generator().manual_seed(2)
    factors = {
        "brightness": (torch.rand(n, generator=g) * 1.6 + 0.2, TF.adjust_brightness, 0),
        "contrast": (torch.rand(n, generator=g) * 1.6 + 0.2, TF.adjust_contrast, 1),
        "saturation": (torch.rand(n, generator=g) * 2.0, TF.adjust_saturation, 2),
        "hue": (torch.rand(n, generator=g) - 0.5, TF.adjust_hue, 3),
    }
    for name, (f, fn, op) in factors.items():
        order = torch.tensor([op, 0, 1, 2] if op == 3 else [op] + [o for o in range(4) if o != op]).repeat(
            n, 1
        )
        # only `name` differs from neutral; the other three steps run with neutral factors (exact no-ops
        # except hue, which is placed last above so the hsv round trip never touches this op's input)
        neutral = {"brightness": torch.ones(n), "contrast": torch.ones(n), "saturation": torch.ones(n)}
        neutral["hue"] = torch.zeros(n)
        neutral[name] = f
        p = _only(n, jitter=torch.ones(n, dtype=torch.bool), order=order, **neutral)
        if name != "hue":  # keep hue out of the chain entirely: jitter with hue 0 still round-trips hsv
            p = dataclasses.replace(p, order=torch.tensor([op, 3, 3, 3]).repeat(n, 1))
        ours = apply(x, p)
        theirs = torch.stack([fn(x[k], float(f[k])) for k in range(n)])
        if name != "hue":
            theirs = torch.stack([TF.adjust_hue(t, 0.0) for t in theirs])
        _check(ours, theirs)


def test_jitter_order_matches_torchvision_sequence():
    x = _images()
    p = sample_params(RECIPES["simclr"], len(x), HW, torch.Generator().manual_seed(3))
    p = dataclasses.replace(
        p, crop=identity_params(len(x), HW, 32).crop, flip=torch.zeros(len(x), dtype=bool)
    )
    p = dataclasses.replace(p, gray=torch.zeros(len(x), dtype=bool))
    fns = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    ref = []
    for k in range(len(x)):
        y = x[k]
        if p.jitter[k]:
            vals = (p.brightness[k], p.contrast[k], p.saturation[k], p.hue[k])
            for op in p.order[k].tolist():
                y = fns[op](y, float(vals[op]))
        ref.append(y)
    _check(apply(x, p), torch.stack(ref))


def test_grayscale_solarize_blur_rotate_match_torchvision():
    x = _images()
    n = len(x)
    on = torch.ones(n, dtype=torch.bool)
    _check(apply(x, _only(n, gray=on)), TF.rgb_to_grayscale(x, num_output_channels=3))
    _check(apply(x, _only(n, solarize=on)), TF.solarize(x, threshold=128 / 255))
    sigma = torch.linspace(0.1, 2.0, n)
    blurred = apply(x, _only(n, blur=on, sigma=sigma))
    ref = torch.stack([TF.gaussian_blur(x[k], [3, 3], [float(sigma[k])] * 2) for k in range(n)])
    _check(blurred, ref)  # kernel 3 = EquiMod's 2 round((32 - 10) / 20) + 1 for a 32 px view
    angles = torch.linspace(-170.0, 350.0, n)
    rotated = apply(x, _only(n, rotation=angles))
    ref = torch.stack(
        [TF.rotate(x[k], float(angles[k]), interpolation=InterpolationMode.BILINEAR) for k in range(n)]
    )
    # grid coordinates come from slightly different float expressions (cos/sin in float32 vs Python doubles):
    # a few 1e-5 px of sampling shift, i.e. < 1e-4 in value on random-noise images
    _check(rotated, ref, atol=1e-4)


def test_uint8_input_matches_torchvision_on_uint8_within_one_level():
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g)
    p = _only(8, crop=torch.tensor([[3.0, 5.0, 20.0, 24.0]]).repeat(8, 1))
    theirs = (
        TF.resized_crop(x, 3, 5, 20, 24, [32, 32], interpolation=InterpolationMode.BILINEAR).float() / 255
    )
    # torchvision resizes uint8 natively, rounding to whole levels (also between its two passes); we resize the
    # floats: at most one level apart. Bilinear only: for bicubic on noise, torchvision's uint8 path also clamps
    # the overshoot between passes (up to ~17 levels off its own float path), which we do not imitate.
    _check(apply(x, p, interpolation="bilinear"), theirs, atol=1 / 255 + 1e-5)
