"""Feature extractors rebuilt from a JSON spec: ``{"kind": "torchvision" | "timm", "arch": ..., ...}``.

Each returns an ``nn.Module`` mapping a normalised image batch to ``{space: [B, D]}`` (``backbone`` = the pooled
feature the classifier would read; ``cls`` = a ViT's class token where it differs from nothing). Weights come
from the imported file, never from a download (``weights=None``, ``pretrained=False``). torchvision and timm are
imported inside the builders so that loading EquiLab's own checkpoints never pays for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from engine.core.errors import CheckpointError, ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision classification architectures and the attribute path of their final classifier layer.
TORCHVISION_HEADS: dict[str, str] = {
    "resnet18": "fc",
    "resnet34": "fc",
    "resnet50": "fc",
    "resnet101": "fc",
    "resnet152": "fc",
    "vit_b_16": "heads",
    "vit_b_32": "heads",
    "convnext_tiny": "classifier.2",
    "convnext_small": "classifier.2",
}


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    *parents, last = path.split(".")
    for p in parents:
        module = module.get_submodule(p) if not p.isdigit() else module[int(p)]
    if last.isdigit():
        module[int(last)] = value
    else:
        setattr(module, last, value)


class Features(nn.Module):
    """``net`` (classifier replaced by Identity) -> ``{"backbone": pooled}``, plus ``cls`` for timm ViTs."""

    def __init__(self, net: nn.Module, cls_token: bool = False) -> None:
        super().__init__()
        self.net, self.cls_token = net, cls_token

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if not self.cls_token:
            return {"backbone": self.net(x)}
        tokens = self.net.forward_features(x)
        return {"backbone": self.net.forward_head(tokens, pre_logits=True), "cls": tokens[:, 0]}


def torchvision_net(spec: dict[str, Any]) -> nn.Module:
    """A torchvision classifier with its last layer removed; ``cifar_stem`` = {"padding": p} swaps in a 3x3/1
    first convolution and drops the max-pool (the CIFAR ResNets of E-SSL, EquiMod and solo-learn)."""
    import torchvision  # optional heavy import: only imported models need it

    arch = spec.get("arch")
    if arch not in TORCHVISION_HEADS:
        raise ConfigError(
            f"unknown torchvision architecture {arch!r}; choose from {sorted(TORCHVISION_HEADS)}"
        )
    kwargs: dict[str, Any] = {"weights": None}
    if arch.startswith("vit") and spec.get("image_size"):
        kwargs["image_size"] = int(spec["image_size"])
    net = getattr(torchvision.models, arch)(**kwargs)
    _set(net, TORCHVISION_HEADS[arch], nn.Identity())
    stem = spec.get("cifar_stem")
    if stem:
        if not arch.startswith("resnet"):
            raise ConfigError(f"a CIFAR stem exists only for ResNets, not {arch}")
        net.conv1 = nn.Conv2d(3, 64, 3, 1, int(stem.get("padding", 1)), bias=False)
        net.maxpool = nn.Identity()
    return net


def timm_net(spec: dict[str, Any]) -> nn.Module:
    """``timm.create_model(arch, pretrained=False, num_classes=0)`` (pooled features, no classifier)."""
    import timm  # optional heavy import: only timm models need it

    arch = spec.get("arch")
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
    if spec.get("image_size") and spec.get("pass_image_size"):
        kwargs["img_size"] = int(spec["image_size"])
    try:
        return timm.create_model(arch, **kwargs)
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"timm cannot build {arch!r} offline: {e}") from e


def timm_defaults(arch: str) -> dict[str, Any]:
    """The preprocessing timm records for ``arch`` (input size, mean, std, interpolation) and its ViT-ness."""
    net = timm_net({"arch": arch})
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    size = cfg.get("input_size", (3, 224, 224))
    return {
        "image_size": int(size[-1]),
        "mean": list(cfg.get("mean", IMAGENET_MEAN)),
        "std": list(cfg.get("std", IMAGENET_STD)),
        "interpolation": cfg.get("interpolation", "bicubic"),
        "cls_token": bool(getattr(net, "cls_token", None) is not None),
    }


BACKBONE_KINDS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "torchvision": torchvision_net,
    "timm": timm_net,
}


def build_backbone(spec: dict[str, Any]) -> Features:
    """The :class:`Features` module of a backbone spec."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in BACKBONE_KINDS:
        raise CheckpointError(f"unknown imported backbone kind {kind!r}; known: {sorted(BACKBONE_KINDS)}")
    return Features(BACKBONE_KINDS[kind](spec), cls_token=bool(spec.get("cls_token")))


def net_keys(spec: dict[str, Any]) -> dict[str, torch.Size]:
    """``{state-dict key: shape}`` of the backbone's net (no classifier)."""
    return {k: v.shape for k, v in build_backbone(spec).net.state_dict().items()}
