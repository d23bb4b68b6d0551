"""SimCLR (Chen et al. 2020) on CIFAR: 2N-way NT-Xent between two augmented views, tau 0.5 (docs/methods.md §8.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Generator, Tensor, nn

from engine.augment import augment, get_recipe
from engine.augment.pretext import PRETEXT_TASKS, sample_labels, transform
from engine.methods.losses import Gather, local, nt_xent
from engine.models import projector


@dataclass(frozen=True)
class SimCLRConfig:
    """Hyper-parameters (paper defaults, CIFAR-10 ResNet-18)."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"invariance": ("", *PRETEXT_TASKS)}

    temperature: float = 0.5  # tau_z (E-SSL and EquiMod CIFAR code)
    proj_hidden: tuple[int, ...] = (2048,)  # §8.1: 512-2048-128, hidden scaled with width (models.heads)
    proj_dim: int = 128
    lr_scale: float = 1.0  # multiplier on the trainer's base lr
    recipe: str = "simclr"  # augmentation recipe of the views (engine.augment.RECIPES)
    gather: bool = True  # under DDP, contrast against negatives from every rank
    # a pretext task added as an invariance (E-SSL's I-SSL arm, docs/methods.md §1.5): each view also gets a
    # uniformly drawn label of it after the recipe; "" = none
    invariance: str = ""


class SimCLR(nn.Module):
    """Backbone + projector; loss = NT-Xent(z1, z2)."""

    Config = SimCLRConfig
    trainable = True
    spaces = ("backbone", "projector")  # embed()'s keys, in order

    def __init__(
        self, backbone: nn.Module, config: SimCLRConfig = SimCLRConfig(), image_size: int = 32
    ) -> None:
        super().__init__()
        self.config, self.image_size = config, image_size
        self.gather: Gather = local  # build_method installs the trainer's (DDP) gather
        self.backbone = backbone
        self.projector = projector(backbone.feat_dim, config.proj_hidden, config.proj_dim)

    def make_views(self, images_uint8: Tensor, generator: Generator) -> dict[str, Tensor]:
        """Two SimCLR-recipe views: {"x1", "x2"} float [B, 3, S, S] in [0, 1]."""
        r = get_recipe(self.config.recipe, self.image_size)
        x1, _ = augment(images_uint8, r, generator)
        x2, _ = augment(images_uint8, r, generator)
        if self.config.invariance:
            t = self.config.invariance
            x1 = transform(x1, t, sample_labels(len(x1), t, generator).to(x1.device))
            x2 = transform(x2, t, sample_labels(len(x2), t, generator).to(x2.device))
        return {"x1": x1, "x2": x2}

    def forward(self, views: dict[str, Tensor]) -> dict[str, Tensor]:
        n = views["x1"].shape[0]
        h = self.backbone(torch.cat([views["x1"], views["x2"]]))  # one pass, shared BN statistics
        z = self.projector(h)
        loss = nt_xent(z[:n], z[n:], self.config.temperature, gather=self.gather)
        return {"loss": loss, "loss/inv": loss.detach()}

    def embed(self, x01: Tensor) -> dict[str, Tensor]:
        """{"backbone": h [B, feat_dim], "projector": z [B, proj_dim]}."""
        h = self.backbone(x01)
        return {"backbone": h, "projector": self.projector(h)}
