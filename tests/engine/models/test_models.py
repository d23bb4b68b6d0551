"""Backbones and heads: shapes, widths, normalisation inside the model, paper head layouts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.models import (
    BACKBONES,
    CIFAR_MEAN,
    CIFAR_STD,
    equimod_predictor,
    mlp,
    param_encoder,
    projector,
    rotation_head,
    scaled_hidden,
)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    ("name", "size", "width", "feat"),
    [("resnet18_cifar", 32, 0.125, 64), ("resnet18", 64, 0.125, 64), ("resnet50", 64, 0.0625, 128)],
)
def test_backbone_shapes(name: str, size: int, width: float, feat: int):
    net = BACKBONES[name](width=width).eval()
    assert net.feat_dim == feat
    with torch.no_grad():
        out = net(torch.rand(2, 3, size, size))
    assert out.shape == (2, feat) and torch.isfinite(out).all()


def test_resnet18_cifar_full_width_matches_paper_layout():
    net = BACKBONES["resnet18_cifar"](width=1.0)
    assert net.feat_dim == 512
    stem_conv = net.stem[0]
    assert stem_conv.kernel_size == (3, 3) and stem_conv.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert [s[0].conv1.out_channels for s in net.stages] == [64, 128, 256, 512]
    # torchvision resnet18 without fc has 11,176,512 params; the CIFAR stem swaps 7x7 for 3x3 (-7,680)
    assert _n_params(net) == 11_168_832


def test_zero_init_residual_makes_blocks_start_as_identity_branches():
    net = BACKBONES["resnet18_cifar"](width=0.125)
    for stage in net.stages:
        for block in stage:
            assert torch.count_nonzero(block.bn2.weight) == 0


def test_normalisation_lives_in_the_model_and_not_in_the_checkpoint():
    net = BACKBONES["resnet18_cifar"](width=0.0625)
    assert torch.allclose(net.mean.flatten(), torch.tensor(CIFAR_MEAN))
    assert torch.allclose(net.std.flatten(), torch.tensor(CIFAR_STD))
    assert "mean" not in net.state_dict() and "std" not in net.state_dict()


def test_channels_last_gives_same_features():
    net = BACKBONES["resnet18_cifar"](width=0.125).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net(x)
        out = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-5)


def test_bf16_autocast_cpu_runs():
    net = BACKBONES["resnet18_cifar"](width=0.0625)
    head = projector(net.feat_dim, (2048,), 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = head(net(torch.rand(4, 3, 32, 32)))
    z.float().sum().backward()
    assert torch.isfinite(z.float()).all()


def test_mlp_layout():
    m = mlp([8, 16, 4], norm="bn", last_norm="bn_noaffine")
    kinds = [type(layer).__name__ for layer in m]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert m[0].bias is None and m[3].bias is None and not m[4].affine
    with pytest.raises(ValueError, match="norm"):
        mlp([8, 4], norm="group")


def test_paper_heads_at_full_width():
    proj = projector(512, (2048,), 128)
    assert [m.out_features for m in proj if isinstance(m, nn.Linear)] == [2048, 128]
    rot = rotation_head(512, (2048, 2048), 4)
    kinds = [type(layer).__name__ for layer in rot]
    assert kinds == ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU", "Linear"]
    assert rot[-1].out_features == 4
    enc = param_encoder(15, 128)
    assert [type(layer).__name__ for layer in enc] == ["Linear", "BatchNorm1d"] and enc[1].affine
    pred = equimod_predictor(128, 128)
    assert pred[0].in_features == 256 and pred[0].out_features == 128 and not pred[1].affine


def test_scaled_hidden_shrinks_with_narrow_backbones():
    assert scaled_hidden((2048,), 512) == [2048]
    assert scaled_hidden((2048, 2048), 64) == [256, 256]
    assert scaled_hidden((2048,), 16) == [128]  # floor
    assert scaled_hidden((2048,), 2048) == [2048]  # ResNet-50 keeps the paper width
