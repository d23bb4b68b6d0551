"""E-SSL / E-SimCLR (Dangovski et al. 2022): SimCLR + lambda x 4-way rotation CE on backbone features of a
separate small view (docs/methods.md §1.2-1.4)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Generator, Tensor, nn

from engine.augment import augment, get_recipe, rotate4
from engine.methods.losses import Gather, local, nt_xent, rotation_ce
from engine.models import projector, rotation_head


@dataclass(frozen=True)
class ESSLConfig:
    """Hyper-parameters (rdangovs/essl cifar10 defaults)."""

    temperature: float = 0.5
    proj_hidden: tuple[int, ...] = (2048,)
    proj_dim: int = 128
    rot_weight: float = 0.4  # lambda on the rotation CE (§1.4)
    rot_hidden: tuple[int, ...] = (2048, 2048)  # 512-2048(LN,ReLU)-2048(LN,ReLU)-4 (§1.2)
    rot_view_scale: float = 0.5  # rotation view side / image side: 16 px at 32 px (§1.3)
    lr_scale: float = 2.0  # E-SimCLR doubles the base lr: 0.03 -> 0.06 x bs/256 (§1.4)
    recipe: str = "simclr"  # augmentation recipe of the views (engine.augment.RECIPES)
    gather: bool = True


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
        self.rotation_head = rotation_head(backbone.feat_dim, config.rot_hidden, 4)

    @property
    def rot_size(self) -> int:
        return max(8, round(self.image_size * self.config.rot_view_scale))

    def make_views(self, images_uint8: Tensor, generator: Generator) -> dict[str, Tensor]:
        """{"x1", "x2"} SimCLR views, {"xr" [4B, 3, s, s], "yr" [4B]} all four rotations of a small view."""
        r = get_recipe(self.config.recipe, self.image_size)
        x1, _ = augment(images_uint8, r, generator)
        x2, _ = augment(images_uint8, r, generator)
        small, _ = augment(images_uint8, dataclasses.replace(r, size=self.rot_size), generator)
        xr, yr = rotate4(small)
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
        return {
            "loss": loss_inv + self.config.rot_weight * loss_rot,
            "loss/inv": loss_inv.detach(),
            "loss/rotation": loss_rot.detach(),
            "acc/rotation": acc,
        }

    def embed(self, x01: Tensor) -> dict[str, Tensor]:
        """{"backbone", "projector", "rotation_logits" [B, 4] (of the image as given)}."""
        h = self.backbone(x01)
        return {"backbone": h, "projector": self.projector(h), "rotation_logits": self.rotation_head(h)}
