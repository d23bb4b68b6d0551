"""ResNet backbones written with plain ``torch.nn`` (torchvision layout, our own code).

A backbone takes float images in [0, 1] (``[B, 3, H, W]``, any memory format) and returns pooled features
``[B, feat_dim]``. Input normalisation lives inside the model as buffers, so the trainer, the embedding store
and the app all feed the same [0, 1] images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def _channels(base: int, width: float) -> int:
    """Channels of a stage at a width multiplier (never below 4 so BN statistics stay meaningful)."""
    return max(4, round(base * width))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut; ResNet-18/34 block."""

    expansion = 1

    def __init__(self, c_in: int, c_mid: int, stride: int) -> None:
        super().__init__()
        c_out = c_mid * self.expansion
        self.conv1 = nn.Conv2d(c_in, c_mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_mid)
        self.conv2 = nn.Conv2d(c_mid, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, torchvision v1.5 placement), 1x1 expand; ResNet-50 block."""

    expansion = 4

    def __init__(self, c_in: int, c_mid: int, stride: int) -> None:
        super().__init__()
        c_out = c_mid * self.expansion
        self.conv1 = nn.Conv2d(c_in, c_mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_mid)
        self.conv2 = nn.Conv2d(c_mid, c_mid, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_mid)
        self.conv3 = nn.Conv2d(c_mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


@dataclass(frozen=True)
class ResNetSpec:
    """Architecture of one registry entry."""

    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]
    cifar_stem: bool  # 3x3 stride-1 conv, no max-pool (32 px inputs); else 7x7/2 + max-pool (>= 64 px)


class ResNet(nn.Module):
    """ResNet feature extractor (fc removed): [0,1] images -> ``[B, feat_dim]`` pooled features."""

    def __init__(
        self,
        spec: ResNetSpec,
        width: float = 1.0,
        zero_init_residual: bool = True,
        mean: tuple[float, float, float] = CIFAR_MEAN,
        std: tuple[float, float, float] = CIFAR_STD,
    ) -> None:
        super().__init__()
        # Constants, not state: non-persistent so checkpoints hold only learned weights and BN statistics.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        c0 = _channels(64, width)
        if spec.cifar_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(3, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, c0, 7, 2, 3, bias=False),
                nn.BatchNorm2d(c0),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        stages, c_in = [], c0
        for i, n_blocks in enumerate(spec.layers):
            c_mid = _channels(64 * 2**i, width)
            blocks = []
            for j in range(n_blocks):
                blocks.append(spec.block(c_in, c_mid, 2 if (i > 0 and j == 0) else 1))
                c_in = c_mid * spec.block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feat_dim = c_in
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each residual branch starts as identity (Goyal et al.; EquiMod's setting)
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_bn().weight)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: float [B, 3, H, W] in [0, 1] -> features [B, feat_dim]."""
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        x = self.stages(self.stem(x))
        return torch.flatten(self.pool(x), 1)


SPECS: dict[str, ResNetSpec] = {
    "resnet18_cifar": ResNetSpec(BasicBlock, (2, 2, 2, 2), cifar_stem=True),
    "resnet18": ResNetSpec(BasicBlock, (2, 2, 2, 2), cifar_stem=False),
    "resnet50": ResNetSpec(Bottleneck, (3, 4, 6, 3), cifar_stem=False),
}


def _builder(name: str) -> Callable[..., ResNet]:
    def build(width: float = 1.0, **kwargs: object) -> ResNet:
        return ResNet(SPECS[name], width=width, **kwargs)

    build.__doc__ = f"Build ``{name}`` at a channel ``width`` multiplier (1.0 = paper model)."
    return build


BACKBONES: dict[str, Callable[..., ResNet]] = {name: _builder(name) for name in SPECS}
