"""The arbitrary-angle rotation op's fill convention against torchvision v2 (engine.augment.ops.rotate)."""

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from engine.augment import RECIPES, sample_params
from engine.augment.ops import rotate

ANGLES = (-90.0, -37.0, 12.5, 45.0, 90.0, 180.0)


def _x():
    return torch.rand(len(ANGLES), 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _tv(x, fill):
    return torch.stack(
        [
            TF.rotate(x[i], a, interpolation=InterpolationMode.BILINEAR, fill=fill)
            for i, a in enumerate(ANGLES)
        ]
    )


def test_rotate_matches_torchvision_fill_none():
    x = _x()
    assert (rotate(x, torch.tensor(ANGLES)) - _tv(x, None)).abs().max().item() <= 1e-5


def test_rotate_differs_from_torchvision_fill_zero_only_near_the_border():
    x = _x()
    diff = (rotate(x, torch.tensor(ANGLES)) - _tv(x, 0)).abs()
    assert 0.01 < diff.max().item() <= 0.3  # documented: up to about 0.25
    assert diff[:, :, 8:24, 8:24].max().item() <= 1e-5  # the interior never touches the fill


def test_caug_recipes_rotate_every_view_within_90_degrees():
    for name in ("simclr_caug", "shapes_caug"):
        p = sample_params(RECIPES[name], 2000, (32, 32), torch.Generator().manual_seed(0))
        assert p.rotation.min().item() >= -90 and p.rotation.max().item() <= 90
        assert p.rotation.abs().max().item() == 90 and p.rotation.unique().numel() > 150
