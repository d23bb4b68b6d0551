"""CLeVER adapted to SimCLR (docs/methods.md §3.3, §8.1): h is sliced into invariant (IR, first 80% channels) and
equivariant-factor (EF, the rest) parts; NT-Xent on g_IR(IR), a separation term pushing g_EF of two views
towards orthogonality, and a head-norm regulariser that keeps g_EF from collapsing."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Generator, Tensor, nn

from engine.augment import augment, get_recipe
from engine.methods.losses import Gather, head_norm_gap, local, nt_xent, separation_loss
from engine.models import mlp, scaled_hidden


@dataclass(frozen=True)
class CLeVERConfig:
    """Hyper-parameters (SifanSong/CLeVER run.sh / DDCL CLeVER_DDCL defaults)."""

    temperature: float = 0.5
    split: float = 0.8  # hp1: IR = first floor(0.8 D) channels (409/103 at D=512)
    sep_weight: float = 1.0  # lambda_sep
    reg_weight: float = 0.001  # lambda_reg on |‖θ_gIR‖² − ‖θ_gEF‖²|
    proj_hidden: tuple[int, ...] = (2048,)  # g_IR and g_EF share the SimCLR projector shape
    proj_dim: int = 128
    ef_dim: int = 128
    lr_scale: float = 1.0
    recipe: str = "simclr"  # augmentation recipe of the views (engine.augment.RECIPES)
    gather: bool = True


class CLeVER(nn.Module):
    """Backbone + g_IR (on IR slice) + g_EF (on EF slice)."""

    Config = CLeVERConfig
    trainable = True
    spaces = ("backbone", "projector", "invariant_part", "equivariant_part")  # embed()'s keys, in order

    def __init__(
        self, backbone: nn.Module, config: CLeVERConfig = CLeVERConfig(), image_size: int = 32
    ) -> None:
        super().__init__()
        self.config, self.image_size = config, image_size
        self.gather: Gather = local  # build_method installs the trainer's (DDP) gather
        self.backbone = backbone
        feat = backbone.feat_dim
        self.n_ir = min(feat - 1, max(1, math.floor(config.split * feat)))
        self.n_ef = feat - self.n_ir
        # Both heads get the hidden width of the full feat_dim (the code gives IR and EF heads equal widths).
        hidden = scaled_hidden(config.proj_hidden, feat)
        self.projector = mlp([self.n_ir, *hidden, config.proj_dim], last_norm="bn_noaffine")  # g_IR
        self.ef_projector = mlp([self.n_ef, *hidden, config.ef_dim], last_norm="bn_noaffine")  # g_EF

    def make_views(self, images_uint8: Tensor, generator: Generator) -> dict[str, Tensor]:
        """Two SimCLR-recipe views {"x1", "x2"} (CLeVER uses no augmentation parameters)."""
        r = get_recipe(self.config.recipe, self.image_size)
        x1, _ = augment(images_uint8, r, generator)
        x2, _ = augment(images_uint8, r, generator)
        return {"x1": x1, "x2": x2}

    def forward(self, views: dict[str, Tensor]) -> dict[str, Tensor]:
        n = views["x1"].shape[0]
        h = self.backbone(torch.cat([views["x1"], views["x2"]]))
        ir, ef = h[:, : self.n_ir], h[:, self.n_ir :]
        z = self.projector(ir)
        e = self.ef_projector(ef)
        loss_inv = nt_xent(z[:n], z[n:], self.config.temperature, gather=self.gather)
        # Symmetrised DDCL form |(cos(e1, sg e2) + cos(e2, sg e1)) / 2|.
        loss_sep = separation_loss(e, torch.cat([e[n:], e[:n]]))
        loss_reg = head_norm_gap(self.projector.parameters(), self.ef_projector.parameters())
        with torch.no_grad():  # collapse diagnostics (DDCL check_ortho): IR views agree, EF views do not
            cos_ir = F.cosine_similarity(ir[:n].float(), ir[n:].float()).mean()
            cos_ef = F.cosine_similarity(ef[:n].float(), ef[n:].float()).mean()
        c = self.config
        return {
            "loss": loss_inv + c.sep_weight * loss_sep + c.reg_weight * loss_reg,
            "loss/inv": loss_inv.detach(),
            "loss/sep": loss_sep.detach(),
            "loss/reg": loss_reg.detach(),
            "cos/ir": cos_ir,
            "cos/ef": cos_ef,
        }

    def heads(self, x01: Tensor) -> dict[str, Tensor]:
        """Where the losses act, beside the raw slices: {"invariant_part" IR, "equivariant_part" EF,
        "ir_head" g_IR(IR) (NT-Xent), "ef_head" g_EF(EF) (separation)}; not a store space."""
        h = self.backbone(x01)
        ir, ef = h[:, : self.n_ir], h[:, self.n_ir :]
        return {
            "invariant_part": ir,
            "equivariant_part": ef,
            "ir_head": self.projector(ir),
            "ef_head": self.ef_projector(ef),
        }

    def embed(self, x01: Tensor) -> dict[str, Tensor]:
        """{"backbone" h, "projector" g_IR(IR), "invariant_part" IR, "equivariant_part" EF}."""
        h = self.backbone(x01)
        ir = h[:, : self.n_ir]
        return {
            "backbone": h,
            "projector": self.projector(ir),
            "invariant_part": ir,
            "equivariant_part": h[:, self.n_ir :],
        }
