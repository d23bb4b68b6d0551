"""Batched image ops with per-sample parameters, written to match torchvision.transforms.v2.functional on float
images in [0, 1] (same formulas, same border handling). All take x float [B, 3, H, W] and [B] parameter tensors."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (ITU-R 601-2 luma)
SOLARIZE_THRESHOLD = 128 / 255  # uint8 threshold 128, as EquiMod's BYOL branch


def _linear(x: Tensor) -> Tensor:
    return (1 - x.abs()).clamp(min=0)


def _cubic(x: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic with a = -0.5: the kernel of torch's antialiased bicubic (PIL's), used by torchvision v2."""
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


FILTERS = {"bilinear": (_linear, 1.0), "bicubic": (_cubic, 2.0)}  # kernel, support at scale 1


def resample_matrix(start: Tensor, length: Tensor, in_size: int, out_size: int, mode: str) -> Tensor:
    """[B, out, in] weights resizing the window [start, start + length) of each row to ``out_size`` samples.

    Same taps and weights as torch's antialiased interpolate (PIL's algorithm) run on the cropped window, so
    crop + resize in one matmul equals torchvision's ``resized_crop``: taps are clipped to the window, not to the
    image, and weights renormalised; downscaling widens the kernel (antialias).
    """
    kernel, base_support = FILTERS[mode]
    scale = length / out_size  # [B]
    support = base_support * scale.clamp(min=1.0)  # [B]
    invscale = 1.0 / scale.clamp(min=1.0)
    pos = torch.arange(out_size, device=start.device, dtype=start.dtype) + 0.5
    center = start[:, None] + pos[None] * scale[:, None]  # [B, out]
    lo = torch.floor(start).clamp(min=0)[:, None]
    hi = torch.ceil(start + length).clamp(max=in_size)[:, None]
    xmin = torch.maximum(torch.floor(center - support[:, None] + 0.5), lo)
    xmax = torch.minimum(torch.floor(center + support[:, None] + 0.5), hi)
    taps = math.ceil(float(support.max())) * 2 + 2
    j = xmin[..., None] + torch.arange(taps, device=start.device, dtype=start.dtype)  # [B, out, K]
    w = kernel((j - center[..., None] + 0.5) * invscale[:, None, None]) * (j < xmax[..., None])
    w = w / w.sum(dim=-1, keepdim=True)
    m = torch.zeros(len(start), out_size, in_size, device=start.device, dtype=start.dtype)
    return m.scatter_add_(2, j.clamp(0, in_size - 1).long(), w)


def resized_crop(x: Tensor, crop: Tensor, flip: Tensor, size: int, mode: str) -> Tensor:
    """Crop ``crop`` [B, 4] (top, left, h, w), resize to size x size, then mirror rows with ``flip``: two matmuls."""
    _, _, h, w = x.shape
    wy = resample_matrix(crop[:, 0], crop[:, 2], h, size, mode)  # [B, S, H]
    wx = resample_matrix(crop[:, 1], crop[:, 3], w, size, mode)  # [B, S, W]
    wx = torch.where(flip[:, None, None], wx.flip(1), wx)  # hflip = reversed output columns
    return wy[:, None] @ x @ wx.transpose(1, 2)[:, None]  # [B, 3, S, S]


def grayscale(x: Tensor) -> Tensor:
    """[B, 1, H, W] luma, torchvision's float formula."""
    r, g, b = x.unbind(dim=1)
    return r.mul(GRAY_WEIGHTS[0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2]).unsqueeze(1)


def _blend(a: Tensor, b: Tensor, ratio: Tensor) -> Tensor:
    r = ratio[:, None, None, None]
    return a.mul(r).add_(b.mul(1.0 - r)).clamp_(0.0, 1.0)


def brightness(x: Tensor, f: Tensor) -> Tensor:
    return x.mul(f[:, None, None, None]).clamp_(0.0, 1.0)


def contrast(x: Tensor, f: Tensor) -> Tensor:
    return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), f)


def saturation(x: Tensor, f: Tensor) -> Tensor:
    return _blend(x, grayscale(x), f)


def _rgb_to_hsv(x: Tensor) -> Tensor:
    """torchvision v2's ``_rgb_to_hsv`` (PIL's algorithm)."""
    r, g, _ = x.unbind(dim=1)
    minc, maxc = torch.aminmax(x, dim=1)
    eqc = maxc == minc
    rng = maxc - minc
    ones = torch.ones_like(maxc)
    s = rng / torch.where(eqc, ones, maxc)
    rc, gc, bc = ((maxc.unsqueeze(1) - x) / torch.where(eqc, ones, rng).unsqueeze(1)).unbind(dim=1)
    neq_r, eq_g = maxc != r, maxc == g
    hg = rc.add(2.0).sub_(bc).mul_(eq_g & neq_r)
    hr = bc.sub(gc).mul_(~neq_r)
    hb = gc.add(4.0).sub_(rc).mul_(neq_r & ~eq_g)
    h = hr.add_(hg).add_(hb).mul_(1.0 / 6.0).add_(1.0).fmod_(1.0)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV -> RGB in closed form, c_n = v - v s clamp(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6, n = 5, 3, 1.

    Equal to torchvision's sector table lookup up to float rounding (~5e-7) and ~100x faster on CPU than its
    index gather.
    """
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1)
    k = (n + h * 6).remainder_(6)
    return v - v * s * torch.minimum(k, 4 - k).clamp_(0.0, 1.0)


def hue(x: Tensor, f: Tensor) -> Tensor:
    """Shift hue by ``f`` turns; wraps around, so any f works (torchvision accepts [-0.5, 0.5])."""
    hsv = _rgb_to_hsv(x)
    h = (hsv[:, 0] + f[:, None, None]).remainder(1.0)
    return _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


COLOUR_OPS = (brightness, contrast, saturation, hue)  # indexed by AugParams.order entries


def blur_kernel_size(size: int) -> int:
    """EquiMod's kernel side for an output side S: 2 round((S - 10) / 20) + 1 (3 for 32 px, 23 for 224 px)."""
    return max(3, 2 * round((size - 10) / 20) + 1)


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with per-row sigma [B], reflect padding (torchvision's ``gaussian_blur``)."""
    b, c, h, w = x.shape
    k = blur_kernel_size(h)
    t = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k, device=x.device)
    kern = torch.softmax(-0.5 * (t[None] / sigma.clamp(min=1e-6)[:, None]) ** 2, dim=1)  # [B, k], sums to 1
    kern = kern.repeat_interleave(c, dim=0)[:, None]  # [B*C, 1, k]
    y = F.pad(x.reshape(1, b * c, h, w), (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    y = F.conv2d(y, kern[..., None, :], groups=b * c)  # along width
    y = F.conv2d(y, kern[..., :, None], groups=b * c)  # along height
    return y.reshape(b, c, h, w)


def solarize(x: Tensor) -> Tensor:
    return torch.where(x >= SOLARIZE_THRESHOLD, 1.0 - x, x)


def rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate counter-clockwise about the centre, same size, zero fill, bilinear (torchvision ``rotate``'s grid).

    Fill convention: this equals torchvision v2 ``rotate(x, angle, BILINEAR)`` with its default ``fill=None``
    (plain zero padding: ``grid_sample`` with ``padding_mode="zeros"``, a sample whose footprint crosses the
    border is a weighted mix of image pixels and zeros), within float rounding. It is NOT ``fill=0``: torchvision
    then appends a mask channel and, for bilinear, re-weights every output pixel whose footprint crosses the
    border by the inside fraction, which differs from this by up to about 0.25 near the border
    (``tests/engine/augment/test_rotation_fill.py``).
    """
    _, _, h, w = x.shape
    th = torch.deg2rad(degrees)
    cos, sin = torch.cos(th), torch.sin(th)
    ys = torch.arange(h, device=x.device, dtype=x.dtype) - h / 2 + 0.5
    xs = torch.arange(w, device=x.device, dtype=x.dtype) - w / 2 + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # pixel centres relative to the image centre
    gx = (cos[:, None, None] * xx - sin[:, None, None] * yy) / (w / 2)
    gy = (sin[:, None, None] * xx + cos[:, None, None] * yy) / (h / 2)
    grid = torch.stack((gx, gy), dim=-1)  # [B, H, W, 2]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
