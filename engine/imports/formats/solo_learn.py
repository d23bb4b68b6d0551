"""A solo-learn PyTorch Lightning ``.ckpt`` (``checkpoint["state_dict"]``): ``backbone.`` = a torchvision ResNet
without fc (CIFAR: 3x3/1 first convolution with padding 2, no max-pool, as solo-learn's BaseMethod builds it),
``projector.`` = the method's projector, ``predictor.`` (BYOL-style methods) fed by the projector. The online
``classifier.``, momentum copies, queues and prototypes are unused. CIFAR files use solo-learn's CIFAR-10
normalisation; others ImageNet's."""

from __future__ import annotations

from typing import Any

from engine.imports.plan import (
    CIFAR_SIDE,
    Plan,
    Request,
    add_head,
    cifar_stem,
    imagenet,
    map_backbone,
    preprocessing,
    torchvision_arch,
)
from engine.imports.source import state_dict_of

DESCRIPTION = "solo-learn Lightning .ckpt (backbone./projector. prefixes; --arch resnet18|resnet50)"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IGNORED = ("classifier.", "momentum_", "queue", "prototypes", "knn.")


def plan(content: Any, request: Request) -> Plan:
    state = state_dict_of(content, "the checkpoint", keys=("state_dict",))
    arch = torchvision_arch(request.arch)
    stem = cifar_stem(state, "backbone.conv1.weight", 2)
    pre = preprocessing(CIFAR_SIDE, CIFAR_MEAN, CIFAR_STD, "bicubic") if stem else imagenet(224)
    spec = {"kind": "torchvision", "arch": arch, "cifar_stem": stem}
    p = Plan(build={"backbone": spec, **pre}, ignored=IGNORED)
    map_backbone(p, state, "backbone.")
    if add_head(p, state, "projector", "projector", "backbone", required=request.strict):
        add_head(p, state, "predictor", "predictor", "projector", required=False)
    return p, state
