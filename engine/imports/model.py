"""The model an imported checkpoint rebuilds into: a foreign backbone and heads behind EquiLab's ``embed``.

``build`` (the sidecar's ``build`` entry, JSON) holds everything: ``backbone`` (engine.imports.backbones spec),
``heads`` (``[{"space", "input", "layers"}]``, layers as engine.imports.layers), ``image_size``, ``mean``/``std``
and ``interpolation`` (the source model's preprocessing), and for EquiMod ``param_encoder``/``eq_predictor``
layers with ``param_stats``. Normalisation lives inside the model (as in engine.models.resnet), so every caller
feeds [0, 1] images as for EquiLab's own models. Imported models are for evaluation only: ``trainable`` is False.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Generator, Tensor, nn

from engine.core.errors import CheckpointError, ConfigError
from engine.imports.backbones import build_backbone
from engine.imports.layers import build_head

IMPORTED = "imported"  # the sidecar's ``method`` of an imported checkpoint
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class ImportedConfig:
    """What the evaluators read of a method's config: the augmentation recipe its parameters refer to."""

    recipe: str | None = None
    lr_scale: float = 0.0


class ImportedModel(nn.Module):
    """Backbone + optional heads; ``embed(x01)`` -> ``{space: [B, D]}`` in ``spaces`` order."""

    trainable = False
    spaces: tuple[str, ...] = ("backbone",)

    def __init__(self, build: dict[str, Any]) -> None:
        super().__init__()
        self.name, self.build_kwargs = IMPORTED, build
        self.image_size = int(build["image_size"])
        self.interpolation = str(build.get("interpolation", "bilinear"))
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation {self.interpolation!r}: choose from {INTERPOLATIONS}")
        self.config = ImportedConfig(recipe=build.get("recipe"))
        if build.get("rot_size"):
            self.rot_size = int(build["rot_size"])
        self.register_buffer("mean", torch.tensor(build["mean"], dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(build["std"], dtype=torch.float32).view(1, 3, 1, 1), False)
        self.backbone = build_backbone(build["backbone"])
        self.heads = nn.ModuleDict({h["space"]: build_head(h["layers"]) for h in build.get("heads", [])})
        self.inputs = {h["space"]: h["input"] for h in build.get("heads", [])}
        base = ["backbone", *(["cls"] if build["backbone"].get("cls_token") else [])]
        self.spaces = (*base, *self.heads)

    def make_views(self, images_uint8: Tensor, generator: Generator) -> dict[str, Tensor]:
        raise ConfigError("an imported model is for evaluation only; EquiLab does not train it")

    def forward(self, views: dict[str, Tensor]) -> dict[str, Tensor]:
        raise ConfigError("an imported model is for evaluation only; EquiLab does not train it")

    def inputs_of(self, x01: Tensor) -> Tensor:
        """[0, 1] images at any size -> the normalised ``image_size`` input of the source model."""
        if tuple(x01.shape[-2:]) != (self.image_size, self.image_size):
            mode = self.interpolation
            x01 = F.interpolate(
                x01,
                size=(self.image_size,) * 2,
                mode=mode,
                antialias=mode != "nearest",
                **({} if mode == "nearest" else {"align_corners": False}),
            ).clamp(0.0, 1.0)
        return (x01 - self.mean.to(x01.dtype)) / self.std.to(x01.dtype)

    def embed(self, x01: Tensor) -> dict[str, Tensor]:
        out = self.backbone(self.inputs_of(x01))
        for space, head in self.heads.items():
            out[space] = head(out[self.inputs[space]])
        return {s: out[s] for s in self.spaces}


class ImportedPredictor(ImportedModel):
    """An imported EquiMod: its own parameter encoder and predictor give ``predict`` (engine.methods.Predicts)."""

    def __init__(self, build: dict[str, Any]) -> None:
        super().__init__(build)
        self.param_encoder = build_head(build["param_encoder"])
        self.eq_predictor = build_head(build["eq_predictor"])
        stats = build["param_stats"]
        self.register_buffer("param_mean", torch.tensor(stats["mean"], dtype=torch.float32))
        self.register_buffer("param_std", torch.tensor(stats["std"], dtype=torch.float32))

    def predict(self, y0: Tensor, param_vector: Tensor) -> Tensor:
        """``u([y0, e_p((p - mean) / std)])``: the absolute predicted ``equivariant`` embedding of the view."""
        p = (param_vector.to(y0.dtype) - self.param_mean.to(y0.dtype)) / self.param_std.to(y0.dtype)
        return self.eq_predictor(torch.cat([y0, self.param_encoder(p)], dim=1))


def build_imported(build: dict[str, Any]) -> ImportedModel:
    """Rebuild an imported model from its sidecar ``build`` entry (CheckpointError when it is malformed)."""
    try:
        cls = ImportedPredictor if build.get("param_stats") else ImportedModel
        return cls(build)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"malformed imported-model description ({type(e).__name__}: {e})") from e
