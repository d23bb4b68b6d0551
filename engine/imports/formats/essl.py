"""E-SSL's CIFAR-10 code (rdangovs/essl ``cifar10/main.py``): ``torch.save(dict(epoch=e,
state_dict=main_branch.state_dict()))`` where the branch holds ``encoder`` (a torchvision-layout ResNet-18 with a
3x3/1 stem, no max-pool, no fc), ``projector.net`` (the projector), ``predictor2`` (the 4-way rotation head, on
the backbone feature) and ``net`` (the same encoder and projector again, unused). CIFAR normalisation of their
``single_transform``; the rotation head saw 16 px views."""

from __future__ import annotations

from typing import Any

from engine.imports.plan import (
    CIFAR_SIDE,
    Plan,
    Request,
    add_head,
    map_backbone,
    preprocessing,
    torchvision_arch,
)
from engine.imports.source import state_dict_of, strip_prefix

DESCRIPTION = "E-SSL authors' CIFAR checkpoint (encoder., projector.net., predictor2.)"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def plan(content: Any, request: Request) -> Plan:
    state = strip_prefix(state_dict_of(content, "the checkpoint", keys=("state_dict",)), "module.")
    arch = torchvision_arch(request.arch)
    spec = {"kind": "torchvision", "arch": arch, "cifar_stem": {"padding": 1}}
    pre = preprocessing(CIFAR_SIDE, MEAN, STD, "bicubic")
    p = Plan(build={"backbone": spec, **pre, "rot_size": 16}, ignored=("net.",))
    map_backbone(p, state, "encoder.")
    add_head(p, state, "projector.net", "projector", "backbone", required=request.strict)
    add_head(p, state, "predictor2", "rotation_logits", "backbone", required=request.strict)
    return p, state
