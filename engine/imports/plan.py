"""What a format reader returns: the imported model's description and where each of its tensors comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from engine.core.errors import CheckpointError
from engine.imports.backbones import IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_HEADS, net_keys
from engine.imports.layers import head_keys, infer_layers

CIFAR_SIDE = 32


@dataclass(frozen=True)
class Request:
    """What the user asked for: ``arch`` (None: the format's default), ``strict`` (heads required)."""

    arch: str | None = None
    strict: bool = True


@dataclass
class Plan:
    """``build`` (engine.imports.model), ``key_map`` (our key -> source key), ``ignored`` (source key prefixes
    knowingly unused: classifiers, momentum copies), ``missing`` (expected source keys/heads that are absent)."""

    build: dict[str, Any]
    key_map: dict[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def preprocessing(image_size: int, mean, std, interpolation: str) -> dict[str, Any]:
    return {
        "image_size": int(image_size),
        "mean": list(mean),
        "std": list(std),
        "interpolation": interpolation,
    }


def imagenet(image_size: int = 224, interpolation: str = "bilinear") -> dict[str, Any]:
    return preprocessing(image_size, IMAGENET_MEAN, IMAGENET_STD, interpolation)


def torchvision_arch(arch: str | None, default: str = "resnet18") -> str:
    arch = arch or default
    if arch not in TORCHVISION_HEADS:
        raise CheckpointError(
            f"unknown torchvision architecture {arch!r}; choose from {sorted(TORCHVISION_HEADS)}"
        )
    return arch


def cifar_stem(state: dict[str, torch.Tensor], conv1: str, padding: int) -> dict[str, int] | None:
    """``{"padding": padding}`` when the source's first convolution is 3x3 (a CIFAR ResNet), else None."""
    w = state.get(conv1)
    return {"padding": padding} if w is not None and w.ndim == 4 and w.shape[-1] == 3 else None


def map_backbone(plan: Plan, state: dict[str, torch.Tensor], src_prefix: str, rename=None) -> None:
    """Map every tensor of the backbone net to ``src_prefix + rename(key)`` (missing ones are reported later)."""
    for k in net_keys(plan.build["backbone"]):
        plan.key_map[f"backbone.net.{k}"] = src_prefix + (rename(k) if rename else k)


def add_head(
    plan: Plan, state: dict[str, torch.Tensor], src_prefix: str, space: str, input_space: str, required: bool
) -> bool:
    """Add the Sequential head saved under ``src_prefix`` as ``space`` (fed by ``input_space``); when absent,
    record it as missing if ``required`` (a strict import) and return False."""
    if not head_keys(state, src_prefix):
        if required:
            plan.missing.append(f"{src_prefix}.* (the {space} head)")
        return False
    layers = infer_layers(state, src_prefix)
    plan.build.setdefault("heads", []).append({"space": space, "input": input_space, "layers": layers})
    for rest in head_keys(state, src_prefix):
        plan.key_map[f"heads.{space}.{rest}"] = f"{src_prefix}.{rest}"
    return True
