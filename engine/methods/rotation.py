"""Reference methods without a contrastive term: rotation-prediction pretext only (Understanding-ESSL's
``four_fold_rotation``, docs/methods.md §4.2; today :class:`engine.methods.pretext.Pretext` with task rotation,
kept under its old name, options and head name so its checkpoints load) and ``none`` (random initialisation, no
training: the random-init floor, docs/methods.md §4.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Generator, Tensor, nn

from engine.augment import identity_view
from engine.methods.pretext import Pretext


@dataclass(frozen=True)
class RotationConfig:
    """Understanding-ESSL four_fold_rotation: Linear(512,2048)-ReLU-Linear(2048,4), CE."""

    rot_hidden: tuple[int, ...] = (2048,)
    lr_scale: float = 1.0


class Rotation(Pretext):
    """``pretext`` with task rotation, all four orientations of every image; head stored as ``rotation_head``."""

    Config = RotationConfig
    spaces = ("backbone", "rotation_logits")  # embed()'s keys, in order
    head_attr: ClassVar[str] = "rotation_head"

    def __init__(
        self, backbone: nn.Module, config: RotationConfig = RotationConfig(), image_size: int = 32
    ) -> None:
        super().__init__(backbone, config, image_size)


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
