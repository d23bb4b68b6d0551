"""C4/D4 ResNet-18: the group acts on feature maps exactly as it says, pooled features are invariant."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.models import BACKBONES
from engine.models.equivariant import GROUPS, EquivariantResNet, GroupBatchNorm, transform_maps


def _net(group: str, cifar_stem: bool = True, pool: str = "group", dtype=torch.float64) -> EquivariantResNet:
    torch.manual_seed(0)
    net = EquivariantResNet(group, width=0.125, cifar_stem=cifar_stem, pool=pool).to(dtype)
    for m in net.modules():  # zero-init residual branches would hide half the network: randomise the affines
        if isinstance(m, GroupBatchNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return net


def _x(n: int = 4, size: int = 32, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=dtype)


def test_group_tables_are_groups():
    for group in GROUPS.values():
        n = group.order
        table = torch.tensor(group.table)
        assert all(sorted(row) == list(range(n)) for row in group.table)  # Latin square
        assert table[0].tolist() == list(range(n))  # element 0 is the identity
        for a in range(n):
            for b in range(n):
                for c in range(n):  # associativity
                    assert table[table[a, b], c] == table[a, table[b, c]]
    c4 = GROUPS["c4"]
    assert [c4.table[1][h] for h in range(4)] == [
        1,
        2,
        3,
        0,
    ]  # a quarter turn shifts the group axis cyclically
    d4 = GROUPS["d4"]
    assert len({tuple(d4.act(torch.arange(9.0).reshape(3, 3), g).flatten().tolist()) for g in range(8)}) == 8


@pytest.mark.parametrize("group", ["c4", "d4"])
@pytest.mark.parametrize("train", [False, True])
def test_maps_transform_by_the_group_and_pooled_features_are_invariant(group, train):
    net, x = _net(group), _x(n=3, size=16)  # 16 -> 8 -> 4 -> 2: every pool sees an even size
    net.train(train)
    g_ = GROUPS[group]
    with torch.no_grad():
        maps = net.feature_maps(x)
        pooled = net(x)
        for g in range(1, g_.order):
            maps_g = net.feature_maps(g_.act(x, g))
            expected = transform_maps(maps, g_, g)
            assert (maps_g - expected).abs().max() <= 1e-10 * maps.abs().max()
            assert (net(g_.act(x, g)) - pooled).abs().max() <= 1e-10 * pooled.abs().max()
            # not trivially invariant: the maps do move
            assert (maps_g - maps).abs().max() > 1e-3 * maps.abs().max()


def test_c4_quarter_turn_is_a_spatial_rot90_and_a_cyclic_shift():
    net, x = _net("c4"), _x()
    with torch.no_grad():
        maps, maps_r = net.feature_maps(x), net.feature_maps(torch.rot90(x, 1, dims=(2, 3)))
    expected = torch.rot90(torch.roll(maps, shifts=1, dims=2), 1, dims=(3, 4))
    assert torch.allclose(maps_r, expected, atol=1e-10 * maps.abs().max(), rtol=0)


def test_float32_train_mode_and_imagenet_stem_at_64px():
    for cifar_stem, size in ((True, 32), (False, 64)):
        net, x = _net("c4", cifar_stem, pool="none", dtype=torch.float32), _x(size=size, dtype=torch.float32)
        net.train()
        with torch.no_grad():
            feats, feats_r = net(x), net(torch.rot90(x, 1, dims=(2, 3)))
        assert feats.shape == (4, net.feat_dim) == (4, 4 * net.fields)
        # regular features: a quarter turn cyclically shifts the four group blocks of every field
        expected = torch.roll(feats.reshape(4, net.fields, 4), shifts=1, dims=2).flatten(1)
        assert (feats_r - expected).abs().max() <= 1e-4 * feats.abs().max()
        assert (feats_r - feats).abs().max() > 1e-2 * feats.abs().max()  # the orientation is readable


def test_forward_backward_and_registry():
    for name in ("resnet18_c4_cifar", "resnet18_d4_cifar", "resnet18_c4_cifar_regular", "resnet18_d4"):
        net = BACKBONES[name](width=0.0625)
        size = 32 if "cifar" in name else 64
        out = net(torch.rand(3, 3, size, size))
        assert out.shape == (3, net.feat_dim) and torch.isfinite(out).all()
        out.square().mean().backward()
        assert net.stem[0].weight.grad is not None and net.stem[0].weight.grad.abs().sum() > 0
    assert BACKBONES["resnet18_c4_cifar"](width=0.125).feat_dim == 32  # 64 channels -> 32 fields of 4
    assert BACKBONES["resnet18_c4_cifar_regular"](width=0.125).feat_dim == 128


def test_parameter_count_matches_the_plain_resnet18_at_the_same_width():
    plain = sum(p.numel() for p in BACKBONES["resnet18_cifar"](width=1.0).parameters())
    for name in ("resnet18_c4_cifar", "resnet18_d4_cifar"):
        net = BACKBONES[name](width=1.0)
        n = sum(p.numel() for p in net.parameters())
        assert abs(n - plain) / plain < 0.01, name
    assert BACKBONES["resnet18_c4_cifar"](width=1.0).feat_dim == 256
    assert BACKBONES["resnet18_d4_cifar_regular"](width=1.0).feat_dim == 181 * 8


def test_batchnorm_statistics_are_shared_across_the_group_axis():
    net = _net("c4")
    bn = net.stem[1]
    assert isinstance(bn, GroupBatchNorm) and bn.num_features * 4 == net.stem[0].filters().shape[0]
    state = net.state_dict()
    assert state["stem.1.running_mean"].shape == (bn.num_features,)
