"""Reference methods without a contrastive term: rotation-prediction pretext only (Understanding-ESSL's
``four_fold_rotation``, docs/methods.md §4.2) and ``none`` (random initialisation, no training: the random-init
floor, docs/methods.md §4.3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Generator, Tensor, nn

from engine.augment import augment, identity_view, light_recipe, rotate4
from engine.methods.losses import rotation_ce
from engine.models import mlp, scaled_hidden


@dataclass(frozen=True)
class RotationConfig:
    """Understanding-ESSL four_fold_rotation: Linear(512,2048)-ReLU-Linear(2048,4), CE."""

    rot_hidden: tuple[int, ...] = (2048,)
    lr_scale: float = 1.0


class Rotation(nn.Module):
    """Backbone + rotation head; every image of the batch appears in all four orientations."""

    Config = RotationConfig
    trainable = True
    spaces = ("backbone", "rotation_logits")  # embed()'s keys, in order

    def __init__(
        self, backbone: nn.Module, config: RotationConfig = RotationConfig(), image_size: int = 32
    ) -> None:
        super().__init__()
        self.config, self.image_size = config, image_size
        self.backbone = backbone
        dims = [backbone.feat_dim, *scaled_hidden(config.rot_hidden, backbone.feat_dim), 4]
        self.rotation_head = mlp(dims, norm=None, bias=True)

    def make_views(self, images_uint8: Tensor, generator: Generator) -> dict[str, Tensor]:
        """{"xr" [4B, 3, S, S] full-size lightly augmented views x 4 rotations, "yr" [4B] labels 0..3}."""
        x, _ = augment(images_uint8, light_recipe(self.image_size), generator)
        xr, yr = rotate4(x)
        return {"xr": xr, "yr": yr}

    def forward(self, views: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.rotation_head(self.backbone(views["xr"]))
        loss = rotation_ce(logits, views["yr"])
        with torch.no_grad():
            acc = (logits.argmax(1) == views["yr"]).float().mean()
        return {"loss": loss, "loss/rotation": loss.detach(), "acc/rotation": acc}

    def embed(self, x01: Tensor) -> dict[str, Tensor]:
        """{"backbone", "rotation_logits" [B, 4]}."""
        h = self.backbone(x01)
        return {"backbone": h, "rotation_logits": self.rotation_head(h)}


@dataclass(frozen=True)
class NoneConfig:
    """No hyper-parameters; ``lr_scale`` only so every config has it."""

    lr_scale: float = 1.0


class NoTraining(nn.Module):
    """Random-init backbone. ``trainable = False``: the trainer saves it without optimisation steps."""

    Config = NoneConfig
    trainable = False
    spaces = ("backbone",)  # embed()'s keys, in order

    def __init__(self, backbone: nn.Module, config: NoneConfig = NoneConfig(), image_size: int = 32) -> None:
        super().__init__()
        self.config, self.image_size = config, image_size
        self.backbone = backbone

    def make_views(self, images_uint8: Tensor, generator: Generator) -> dict[str, Tensor]:
        """{"x0": the un-augmented images in [0, 1]} (unused by forward)."""
        return {"x0": identity_view(images_uint8, self.image_size)}

    def forward(self, views: dict[str, Tensor]) -> dict[str, Tensor]:
        """A zero loss that supports ``backward()`` (a no-op) so generic loops need no special case."""
        device = next(iter(views.values())).device if views else None
        return {"loss": torch.zeros((), device=device, requires_grad=True)}

    def embed(self, x01: Tensor) -> dict[str, Tensor]:
        return {"backbone": self.backbone(x01)}
