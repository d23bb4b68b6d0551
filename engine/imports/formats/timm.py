"""A timm model's state dict (``torch.save(model.state_dict())`` or timm's / the Hub's ``model.safetensors``),
built offline by name with ``pretrained=False``; the classifier head is unused. Spaces: ``backbone`` (timm's
pooled pre-logits feature) and, for models with a class token (ViTs), ``cls``. Preprocessing from timm's
``pretrained_cfg`` for the architecture (input size, mean, std, interpolation)."""

from __future__ import annotations

from typing import Any

from engine.core.errors import CheckpointError
from engine.imports.backbones import timm_defaults
from engine.imports.plan import Plan, Request, map_backbone, preprocessing
from engine.imports.source import state_dict_of, strip_prefix

DESCRIPTION = "timm model state dict (--arch <timm model name>, e.g. vit_small_patch16_224, resnet50)"


def plan(content: Any, request: Request) -> Plan:
    if not request.arch:
        raise CheckpointError("--arch is required for timm: the timm model name (e.g. vit_small_patch16_224)")
    state = strip_prefix(state_dict_of(content, "the file"), "module.")
    d = timm_defaults(request.arch)
    spec = {"kind": "timm", "arch": request.arch, "cls_token": d["cls_token"], "image_size": d["image_size"]}
    pre = preprocessing(d["image_size"], d["mean"], d["std"], d["interpolation"])
    p = Plan(build={"backbone": spec, **pre}, ignored=("head.", "fc.", "classifier.", "head_drop."))
    map_backbone(p, state, "")
    return p, state
