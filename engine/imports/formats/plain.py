"""A plain ``{name: tensor}`` safetensors file holding a torchvision (``--arch resnet18``) or timm
(``--arch timm:<name>``) model's state dict, optionally prefixed ``backbone.``, with an optional ``projector.``
Sequential head."""

from __future__ import annotations

from typing import Any

from engine.core.errors import CheckpointError
from engine.imports.formats import timm as timm_format
from engine.imports.formats import torchvision as tv_format
from engine.imports.plan import Plan, Request, add_head
from engine.imports.source import tensor_dict

DESCRIPTION = "plain {name: tensor} safetensors file (--arch <torchvision arch> or timm:<name>)"


def plan(content: Any, request: Request) -> Plan:
    state = tensor_dict(content, "the file")
    if any(not isinstance(k, str) for k in state):
        raise CheckpointError("the safetensors file has non-string keys")
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if not k.startswith("projector.")}
    arch = request.arch or "resnet18"
    if arch.startswith("timm:"):
        p, _ = timm_format.plan(backbone, Request(arch.removeprefix("timm:"), request.strict))
    else:
        p, _ = tv_format.plan(backbone, request)
    prefixed = any(k.startswith("backbone.") for k in state)
    if prefixed:
        p.key_map = {ours: f"backbone.{src}" for ours, src in p.key_map.items()}
        p.ignored = tuple(f"backbone.{i}" for i in p.ignored)
    add_head(p, state, "projector", "projector", "backbone", required=False)
    return p, state
