"""Rotation-equivariant ResNet-18 backbones (C4 and D4 group convolutions) on plain torch.

Why not escnn: escnn 1.0.11 (the last release) hard-requires ``py3nj``, which ships no wheel and needs a Fortran
compiler to build, and ``lie_learn``, whose only binary is the 2019 0.0.2; neither installs cleanly beside
torch 2.14.1, so the few layers a regular-representation ResNet needs are written here (Cohen & Welling 2016).

Group ``G`` (``c4``: the four quarter turns; ``d4``: those and their mirror images, 8 elements). Element
``g = 4 s + k`` acts on an image or filter as ``rot90(hflip^s(x), k)`` (:meth:`Group.act`); feature maps are
``[B, C * |G|, H, W]`` tensors holding ``C`` fields of ``|G|`` channels each (channel ``c |G| + g``).

* Lifting convolution (stem): one base filter per output field, applied in its ``|G|`` transformed copies.
* Group convolution: ``out_g = sum_h in_h * T_g(W[g^-1 h])`` — each filter bank is transformed by ``g`` and its
  group axis permuted, so the weights are shared across the group.
* BatchNorm is shared across the group axis (one mean/var/affine per field, statistics over ``|G| x H x W``), so
  equivariance holds in train mode too; ReLU is pointwise.
* Downsampling is a 2x2 average pool followed by a stride-1 convolution (ResNet-D style, in the residual branch
  and the shortcut): a stride-2 convolution samples a grid that a 90 degree turn of an even-sized image does not
  map onto itself, so it would only be approximately equivariant. The ImageNet stem is a stride-1 7x7 lift, 2x2
  average pool, then a 2x2 max pool. With even sizes at every pool (32, 64, 96, 224 px inputs), rotating the input
  by ``g`` turns every feature map by ``g`` and permutes its group axis: ``maps(T_g x)[:, :, h] =
  T_g(maps(x)[:, :, g^-1 h])`` exactly (float rounding only).
* Output: ``pool="group"`` averages each field over the group axis and space, an **invariant** feature
  (``feat_dim = C``): a rotation head on it can only reach chance. ``pool="none"`` (the ``*_regular`` names)
  averages over space only, keeping the group axis (``feat_dim = C |G|``): a rotation permutes its ``|G|`` blocks,
  so the orientation stays readable — use it for rotation prediction (E-SSL, the pretext task).

Width: a stage of ``c`` plain channels (``64 * 2^i * width``, as :mod:`engine.models.resnet`) gets
``round(c / sqrt(|G|))`` fields, so a layer's weights ``C_out C_in |G| k^2`` match the plain ``c^2 k^2``: C4 has
32/64/128/256 fields (feat_dim 256, or 1024 regular), D4 23/45/91/181 (181, or 1448); parameters within 1% of the
plain ResNet-18, while activations and FLOPs grow about ``sqrt(|G|)`` and ``|G|`` times.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.resnet import CIFAR_MEAN, CIFAR_STD, _channels


@dataclass(frozen=True)
class Group:
    """A finite group of grid symmetries: quarter turns, optionally with mirrors (elements ``4 s + k``)."""

    name: str
    flips: bool

    @property
    def order(self) -> int:
        return 8 if self.flips else 4

    def act(self, x: Tensor, g: int) -> Tensor:
        """Element ``g = 4 s + k`` on the last two axes: mirror left-right ``s`` times, then turn ``k`` times CCW."""
        s, k = divmod(g, 4)
        return torch.rot90(x.flip(-1) if s else x, k, dims=(-2, -1))

    @cached_property
    def table(self) -> tuple[tuple[int, ...], ...]:
        """Cayley table ``table[a][b] = a b`` (act by b, then by a), read off a generic 3x3 pattern."""
        probe = torch.arange(9.0).reshape(3, 3)
        images = [self.act(probe, g) for g in range(self.order)]

        def find(y: Tensor) -> int:
            return next(c for c, im in enumerate(images) if torch.equal(im, y))

        return tuple(
            tuple(find(self.act(images[b], a)) for b in range(self.order)) for a in range(self.order)
        )

    def inverse(self, g: int) -> int:
        return self.table[g].index(0)

    @cached_property
    def shift(self) -> Tensor:
        """``shift[g, h] = g^-1 h``: the group-axis permutation that goes with acting by ``g``."""
        return torch.tensor(
            [[self.table[self.inverse(g)][h] for h in range(self.order)] for g in range(self.order)]
        )


GROUPS: dict[str, Group] = {"c4": Group("c4", flips=False), "d4": Group("d4", flips=True)}


def transform_maps(maps: Tensor, group: Group, g: int) -> Tensor:
    """How feature maps ``[B, C, |G|, H, W]`` transform when the input is acted on by ``g``."""
    return group.act(maps[:, :, group.shift[g]], g)


def _init(weight: Tensor, fan_out: int) -> None:
    """Kaiming-normal (fan-out, ReLU) for the expanded filter the base weight stands for."""
    with torch.no_grad():
        weight.normal_(0.0, math.sqrt(2.0 / fan_out))


class LiftConv(nn.Module):
    """Image [B, c_in, H, W] -> ``fields`` regular fields [B, fields |G|, H, W] (stride 1, 'same' padding)."""

    def __init__(self, group: Group, c_in: int, fields: int, kernel: int) -> None:
        super().__init__()
        self.group, self.kernel = group, kernel
        self.weight = nn.Parameter(torch.empty(fields, c_in, kernel, kernel))
        _init(self.weight, fields * group.order * kernel * kernel)

    def filters(self) -> Tensor:
        w = torch.stack([self.group.act(self.weight, g) for g in range(self.group.order)], dim=1)
        return w.reshape(-1, *self.weight.shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.filters().to(x.dtype), padding=self.kernel // 2)


class GroupConv(nn.Module):
    """Regular fields -> regular fields (stride 1, 'same' padding); base weight [out, in, |G|, k, k]."""

    def __init__(self, group: Group, fields_in: int, fields_out: int, kernel: int) -> None:
        super().__init__()
        self.group, self.kernel = group, kernel
        self.weight = nn.Parameter(torch.empty(fields_out, fields_in, group.order, kernel, kernel))
        self.register_buffer("shift", group.shift.clone(), persistent=False)
        _init(self.weight, fields_out * group.order * kernel * kernel)

    def filters(self) -> Tensor:
        """The expanded filter [out |G|, in |G|, k, k]: ``full[o, g, i, h] = T_g(W[o, i, g^-1 h])``."""
        n, (o, i, _, k, _) = self.group.order, self.weight.shape
        banks = [
            self.group.act(self.weight[:, :, self.shift[g]], g) for g in range(n)
        ]  # each [o, i, |G|, k, k]
        return torch.stack(banks, dim=1).reshape(o * n, i * n, k, k)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.filters().to(x.dtype), padding=self.kernel // 2)


class GroupBatchNorm(nn.BatchNorm2d):
    """BatchNorm with one mean/var/affine per field, shared over its ``order`` group channels."""

    def __init__(self, fields: int, order: int) -> None:
        super().__init__(fields)
        self.order = order

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        return super().forward(x.reshape(b, c // self.order, self.order * h, w)).reshape(b, c, h, w)


class GroupBlock(nn.Module):
    """ResNet-18 basic block on regular fields; stride 2 = 2x2 average pool before the convolutions."""

    def __init__(self, group: Group, fields_in: int, fields: int, stride: int) -> None:
        super().__init__()
        n = group.order
        self.down = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        self.conv1 = GroupConv(group, fields_in, fields, 3)
        self.bn1 = GroupBatchNorm(fields, n)
        self.conv2 = GroupConv(group, fields, fields, 3)
        self.bn2 = GroupBatchNorm(fields, n)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or fields_in != fields:
            self.shortcut = nn.Sequential(GroupConv(group, fields_in, fields, 1), GroupBatchNorm(fields, n))

    def last_bn(self) -> GroupBatchNorm:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def fields_for(channels: int, group: Group) -> int:
    """Fields that give a group layer the weights of a plain layer of ``channels``: ``channels / sqrt(|G|)``."""
    return max(1, round(channels / math.sqrt(group.order)))


class EquivariantResNet(nn.Module):
    """Group-equivariant ResNet-18: [0, 1] images -> ``[B, feat_dim]`` (invariant, or regular with ``pool="none"``)."""

    def __init__(
        self,
        group: str = "c4",
        width: float = 1.0,
        cifar_stem: bool = True,
        pool: str = "group",
        layers: tuple[int, ...] = (2, 2, 2, 2),
        zero_init_residual: bool = True,
        mean: tuple[float, float, float] = CIFAR_MEAN,
        std: tuple[float, float, float] = CIFAR_STD,
    ) -> None:
        super().__init__()
        if group not in GROUPS or pool not in ("group", "none"):
            raise ValueError(f"group must be one of {sorted(GROUPS)} and pool 'group' or 'none'")
        self.group, self.pool_mode = GROUPS[group], pool
        n = self.group.order
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        f0 = fields_for(_channels(64, width), self.group)
        if cifar_stem:
            self.stem = nn.Sequential(
                LiftConv(self.group, 3, f0, 3), GroupBatchNorm(f0, n), nn.ReLU(inplace=True)
            )
        else:
            self.stem = nn.Sequential(
                LiftConv(self.group, 3, f0, 7),
                nn.AvgPool2d(2),
                GroupBatchNorm(f0, n),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )
        stages, f_in = [], f0
        for i, n_blocks in enumerate(layers):
            f = fields_for(_channels(64 * 2**i, width), self.group)
            stride = [2 if (i > 0 and j == 0) else 1 for j in range(n_blocks)]
            stages.append(
                nn.Sequential(*(GroupBlock(self.group, f if j else f_in, f, s) for j, s in enumerate(stride)))
            )
            f_in = f
        self.stages = nn.Sequential(*stages)
        self.fields = f_in
        self.feat_dim = f_in if pool == "group" else f_in * n
        for m in self.modules():
            if isinstance(m, GroupBatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each residual branch starts as identity, as the plain ResNet
            for m in self.modules():
                if isinstance(m, GroupBlock):
                    nn.init.zeros_(m.last_bn().weight)

    def feature_maps(self, x: Tensor) -> Tensor:
        """The last stage's maps ``[B, fields, |G|, h, w]`` (before any pooling)."""
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        y = self.stages(self.stem(x))
        return y.reshape(y.shape[0], self.fields, self.group.order, *y.shape[-2:])

    def forward(self, x: Tensor) -> Tensor:
        """``x``: float [B, 3, H, W] in [0, 1] -> features [B, feat_dim]."""
        maps = self.feature_maps(x)
        if self.pool_mode == "group":
            return maps.mean(dim=(2, 3, 4))
        return maps.mean(dim=(3, 4)).flatten(1)


def _builder(group: str, cifar_stem: bool, pool: str) -> Callable[..., EquivariantResNet]:
    def build(width: float = 1.0, **kwargs: object) -> EquivariantResNet:
        return EquivariantResNet(group, width=width, cifar_stem=cifar_stem, pool=pool, **kwargs)

    kind = "invariant (group-pooled)" if pool == "group" else "regular (group axis kept)"
    build.__doc__ = f"{group.upper()} ResNet-18, {kind} features, at a channel ``width`` multiplier."
    return build


EQUIVARIANT_BACKBONES: dict[str, Callable[..., EquivariantResNet]] = {
    f"resnet18_{group}{'_cifar' if cifar else ''}{'' if pool == 'group' else '_regular'}": _builder(
        group, cifar, pool
    )
    for group in GROUPS
    for cifar in (True, False)
    for pool in ("group", "none")
}
