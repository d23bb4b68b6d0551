"""Sequential heads described as data, inferred from a state dict: ``[{"type": "linear", ...}, {"type": "relu"}]``.

A head saved from an ``nn.Sequential`` has keys ``<prefix>.<index>.<param>``; indices without parameters are the
activations between layers (ReLU in every layout read here). Linear (2-d ``weight``), BatchNorm1d
(``running_mean``; affine when it has ``weight``) and LayerNorm (1-d ``weight``, no running stats) are recognised.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.core.errors import CheckpointError


def head_keys(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix.`` keyed by what follows it."""
    p = prefix + "."
    return {k[len(p) :]: v for k, v in state.items() if k.startswith(p)}


def infer_layers(state: dict[str, torch.Tensor], prefix: str) -> list[dict[str, Any]]:
    """Layer specs of the Sequential saved under ``prefix`` (CheckpointError when it is not one)."""
    sub = head_keys(state, prefix)
    by_index: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in sub.items():
        idx, _, name = key.partition(".")
        if not idx.isdigit() or "." in name:
            raise CheckpointError(f"{prefix}: key {prefix}.{key} is not part of a plain Sequential head")
        by_index.setdefault(int(idx), {})[name] = v
    if not by_index:
        raise CheckpointError(f"no tensors under {prefix!r}")
    layers: list[dict[str, Any]] = []
    for i in range(max(by_index) + 1):
        p = by_index.get(i)
        if p is None:
            layers.append({"type": "relu"})
        elif "running_mean" in p:
            layers.append({"type": "bn", "dim": int(p["running_mean"].shape[0]), "affine": "weight" in p})
        elif "weight" in p and p["weight"].ndim == 2:
            out_dim, in_dim = p["weight"].shape
            layers.append({"type": "linear", "in": int(in_dim), "out": int(out_dim), "bias": "bias" in p})
        elif "weight" in p and p["weight"].ndim == 1:
            layers.append({"type": "ln", "dim": int(p["weight"].shape[0])})
        else:
            raise CheckpointError(
                f"{prefix}.{i}: tensors {sorted(p)} are not a Linear, BatchNorm or LayerNorm"
            )
    return layers


def _layer(spec: dict[str, Any]) -> nn.Module:
    kind = spec.get("type")
    if kind == "linear":
        return nn.Linear(int(spec["in"]), int(spec["out"]), bias=bool(spec["bias"]))
    if kind == "bn":
        return nn.BatchNorm1d(int(spec["dim"]), affine=bool(spec["affine"]))
    if kind == "ln":
        return nn.LayerNorm(int(spec["dim"]))
    if kind == "relu":
        return nn.ReLU()
    raise CheckpointError(f"unknown head layer {spec!r}")


def build_head(layers: list[dict[str, Any]]) -> nn.Sequential:
    """The ``nn.Sequential`` of ``layers`` (same indices as the source, so keys map one to one)."""
    return nn.Sequential(*[_layer(s) for s in layers])


def out_dim(layers: list[dict[str, Any]]) -> int:
    """Output width of a head: its last Linear's ``out``."""
    return next(int(s["out"]) for s in reversed(layers) if s["type"] == "linear")
