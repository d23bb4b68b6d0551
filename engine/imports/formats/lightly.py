"""lightly's documented examples: ``backbone = nn.Sequential(*list(torchvision resnet.children())[:-1])`` and
heads from ``lightly.models.modules`` (``projection_head.layers``, ``prediction_head.layers``), saved as the
module's state dict or a Lightning ``.ckpt``. ``backbone.<i>`` is the i-th child of the torchvision ResNet
(0 conv1, 1 bn1, 4-7 layer1-4). ImageNet normalisation (lightly's default); ``--input-size`` for CIFAR runs."""

from __future__ import annotations

from typing import Any

from engine.imports.plan import Plan, Request, add_head, imagenet, map_backbone, torchvision_arch
from engine.imports.source import state_dict_of, strip_prefix

DESCRIPTION = "lightly example model (backbone = ResNet children, projection_head / prediction_head)"
CHILDREN = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
IGNORED = ("backbone_momentum.", "projection_head_momentum.", "momentum_")


def _child(key: str) -> str:
    head, _, rest = key.partition(".")
    return f"{CHILDREN[head]}.{rest}"


def plan(content: Any, request: Request) -> Plan:
    state = strip_prefix(state_dict_of(content, "the file", keys=("state_dict",)), "module.")
    arch = torchvision_arch(request.arch)
    spec = {"kind": "torchvision", "arch": arch, "cifar_stem": None}
    p = Plan(build={"backbone": spec, **imagenet(224)}, ignored=IGNORED)
    map_backbone(p, state, "backbone.", rename=_child)
    if add_head(p, state, "projection_head.layers", "projector", "backbone", required=request.strict):
        add_head(p, state, "prediction_head.layers", "predictor", "projector", required=False)
    return p, state
