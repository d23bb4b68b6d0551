"""A torchvision classification model's state dict (``torch.save(model.state_dict())`` or a .safetensors copy):
keys exactly as ``torchvision.models.<arch>()`` names them; the classifier (fc / heads / classifier.2) is unused.
ImageNet preprocessing (224 px, bilinear, ImageNet mean/std) unless overridden; a 3x3 first convolution marks a
CIFAR ResNet (3x3/1 stem, no max-pool, 32 px)."""

from __future__ import annotations

from typing import Any

from engine.imports.backbones import TORCHVISION_HEADS
from engine.imports.plan import (
    CIFAR_SIDE,
    Plan,
    Request,
    cifar_stem,
    imagenet,
    map_backbone,
    torchvision_arch,
)
from engine.imports.source import state_dict_of, strip_prefix

DESCRIPTION = "torchvision classification state dict (resnet18/34/50, vit_b_16, convnext_tiny, ...)"


def plan(content: Any, request: Request) -> Plan:
    state = strip_prefix(state_dict_of(content, "the file"), "module.")
    arch = torchvision_arch(request.arch)
    stem = cifar_stem(state, "conv1.weight", 1) if arch.startswith("resnet") else None
    pre = imagenet(CIFAR_SIDE if stem else 224)
    spec = {"kind": "torchvision", "arch": arch, "cifar_stem": stem, "image_size": pre["image_size"]}
    p = Plan(build={"backbone": spec, **pre}, ignored=(TORCHVISION_HEADS[arch] + ".",))
    map_backbone(p, state, "")
    return p, state
