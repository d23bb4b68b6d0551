"""EquiMod's code (ADevillers/EquiMod ``src/main.py``): ``torch.save({"model": EquiMod.state_dict(), ...})`` with
``resnet`` (torchvision ResNet, fc removed; CIFAR: 3x3/1 stem, no max-pool), ``proj_head_inv`` (invariance
projector), ``predictor_inv`` (the BYOL version's predictor), ``proj_head_eq`` (equivariant projector),
``proj_head_t`` (parameter encoder) and ``predictor_eq`` (predictor u). With the CIFAR SimCLR version's 15-d
parameter vector (the layout of ``engine.augment.equimod_vector``) the imported model keeps its own predictor
(``predict``), z-scoring parameters with the statistics of EquiLab's ``simclr`` recipe (which match the authors'
constants); other parameter layouts (the BYOL version's 18-d with blur and solarisation) keep the encoders'
weights out and are scored with the post-hoc predictors."""

from __future__ import annotations

from typing import Any

from engine.augment import get_recipe, param_stats
from engine.imports.layers import infer_layers
from engine.imports.plan import (
    CIFAR_SIDE,
    Plan,
    Request,
    add_head,
    cifar_stem,
    map_backbone,
    preprocessing,
    torchvision_arch,
)
from engine.imports.source import state_dict_of, strip_prefix

DESCRIPTION = "EquiMod authors' checkpoint ({'model': ...}: resnet., proj_head_inv/eq/t, predictor_eq)"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PARAM_DIM = 15  # engine.augment.equimod_vector


def _predictor(p: Plan, state: dict) -> None:
    w = state.get("proj_head_t.0.weight")
    if w is None or "predictor_eq.0.weight" not in state:
        p.notes.append("no parameter encoder / predictor in the file: post-hoc predictors only")
        p.ignored = (*p.ignored, "proj_head_t.", "predictor_eq.")
        return
    if w.shape[1] != PARAM_DIM or p.build["image_size"] != CIFAR_SIDE:
        p.notes.append(
            f"its {w.shape[1]}-d parameter vector is not EquiLab's 15-d CIFAR SimCLR layout: its own predictor "
            "is not used (post-hoc predictors only)"
        )
        p.ignored = (*p.ignored, "proj_head_t.", "predictor_eq.")
        return
    side = p.build["image_size"]
    mean, std = param_stats(get_recipe("simclr", side), (side, side))
    p.build.update(
        param_encoder=infer_layers(state, "proj_head_t"),
        eq_predictor=infer_layers(state, "predictor_eq"),
        param_stats={"mean": mean.tolist(), "std": std.tolist()},
        recipe="simclr",
    )
    for src in state:
        for prefix, ours in (("proj_head_t.", "param_encoder."), ("predictor_eq.", "eq_predictor.")):
            if src.startswith(prefix):
                p.key_map[ours + src.removeprefix(prefix)] = src


def plan(content: Any, request: Request) -> Plan:
    state = strip_prefix(state_dict_of(content, "the checkpoint", keys=("model", "state_dict")), "module.")
    arch = torchvision_arch(request.arch)
    stem = cifar_stem(state, "resnet.conv1.weight", 1)
    pre = (
        preprocessing(CIFAR_SIDE, CIFAR_MEAN, CIFAR_STD, "bicubic")
        if stem
        else preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, "bicubic")
    )
    p = Plan(build={"backbone": {"kind": "torchvision", "arch": arch, "cifar_stem": stem}, **pre})
    map_backbone(p, state, "resnet.")
    if add_head(p, state, "proj_head_inv", "projector", "backbone", required=request.strict):
        add_head(p, state, "predictor_inv", "predictor", "projector", required=False)
    if add_head(p, state, "proj_head_eq", "equivariant", "backbone", required=request.strict):
        _predictor(p, state)
    else:
        p.ignored = (*p.ignored, "proj_head_t.", "predictor_eq.")
    return p, state
