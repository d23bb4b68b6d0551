"""E-SSL / E-SimCLR (Dangovski et al. 2022): SimCLR + lambda x 4-way rotation CE on backbone features of a
separate small view (docs/methods.md §1.2-1.4). ``transform`` makes the equivariant head predict any pretext task of
``engine.augment.pretext`` instead (E-SSL's per-transformation study, §1.5); rotation is the default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Generator, Tensor, nn

from engine.augment import augment, get_recipe
from engine.augment.pretext import PRETEXT_TASKS, expand, get_task, without_task
from engine.methods.losses import Gather, local, nt_xent, rotation_ce
from engine.methods.protocol import logits_key
from engine.models import projector, rotation_head


@dataclass(frozen=True)
class ESSLConfig:
    """Hyper-parameters (rdangovs/essl cifar10 defaults)."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"transform": tuple(PRETEXT_TASKS)}

    temperature: float = 0.5
    proj_hidden: tuple[int, ...] = (2048,)
    proj_dim: int = 128
    rot_weight: float = 0.4  # lambda on the rotation CE (§1.4)
    rot_hidden: tuple[int, ...] = (2048, 2048)  # 512-2048(LN,ReLU)-2048(LN,ReLU)-4 (§1.2)
    rot_view_scale: float = 0.5  # rotation view side / image side: 16 px at 32 px (§1.3)
    lr_scale: float = 2.0  # E-SimCLR doubles the base lr: 0.03 -> 0.06 x bs/256 (§1.4)
    recipe: str = "simclr"  # augmentation recipe of the views (engine.augment.RECIPES)
    gather: bool = True
    transform: str = "rotation"  # the pretext task the equivariant head predicts (engine.augment.pretext)
    # True: the head's small view never applies ``transform`` before its label (SimCLR's recipe mirrors and grays
    # at random, which hides the hflip and grayscale labels; docs/methods.md §4.4). The two SimCLR views keep the
    # recipe, so the invariance loss still asks for the invariance the head is asked to break. False keeps the
    # recipe as it is, so earlier configs mean what they meant.
    task_free_base: bool = False


class ESSL(nn.Module):
    """Backbone + projector + rotation head on h."""

    Config = ESSLConfig
    trainable = True
    spaces = ("backbone", "projector", "rotation_logits")  # embed()'s keys, in order

    def __init__(self, backbone: nn.Module, config: ESSLConfig = ESSLConfig(), image_size: int = 32) -> None:
        super().__init__()
        self.config, self.image_size = config, image_size
        self.gather: Gather = local  # build_method installs the trainer's (DDP) gather
        self.backbone = backbone
        self.projector = projector(backbone.feat_dim, config.proj_hidden, config.proj_dim)
        self.pretext_task = config.transform
        self.logits_key = logits_key(config.transform)
        self.spaces = ("backbone", "projector", self.logits_key)
        # named rotation_head for every task so rotation checkpoints load unchanged
        k = get_task(config.transform).n_labels
        self.rotation_head = rotation_head(backbone.feat_dim, config.rot_hidden, k)

    @property
    def rot_size(self) -> int:
        return max(8, round(self.image_size * self.config.rot_view_scale))

    def make_views(self, images_uint8: Tensor, generator: Generator) -> dict[str, Tensor]:
        """{"x1", "x2"} SimCLR views, {"xr" [kB, 3, s, s], "yr" [kB]} a small view under all k labels of the
        task (all four rotations by default), drawn without the task's own transformation when
        ``task_free_base``."""
        r = get_recipe(self.config.recipe, self.image_size)
        x1, _ = augment(images_uint8, r, generator)
        x2, _ = augment(images_uint8, r, generator)
        small_recipe = dataclasses.replace(r, size=self.rot_size)
        if self.config.task_free_base:
            small_recipe = without_task(small_recipe, self.pretext_task)
        small, _ = augment(images_uint8, small_recipe, generator)
        xr, yr = expand(small, self.pretext_task)
        return {"x1": x1, "x2": x2, "xr": xr, "yr": yr}

    def forward(self, views: dict[str, Tensor]) -> dict[str, Tensor]:
        n = views["x1"].shape[0]
        z = self.projector(self.backbone(torch.cat([views["x1"], views["x2"]])))
        loss_inv = nt_xent(z[:n], z[n:], self.config.temperature, gather=self.gather)
        # Separate pass: the small rotation views have another size (BN statistics are per pass, as in E-SSL).
        logits = self.rotation_head(self.backbone(views["xr"]))
        loss_rot = rotation_ce(logits, views["yr"])
        with torch.no_grad():
            acc = (logits.argmax(1) == views["yr"]).float().mean()
        t = self.pretext_task
        return {
            "loss": loss_inv + self.config.rot_weight * loss_rot,
            "loss/inv": loss_inv.detach(),
            f"loss/{t}": loss_rot.detach(),
            f"acc/{t}": acc,
        }

    def embed(self, x01: Tensor) -> dict[str, Tensor]:
        """{"backbone", "projector", "rotation_logits" | "pretext_logits" [B, k] (of the image as given)}."""
        h = self.backbone(x01)
        return {"backbone": h, "projector": self.projector(h), self.logits_key: self.rotation_head(h)}
