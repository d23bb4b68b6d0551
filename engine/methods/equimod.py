"""EquiMod on SimCLR (Devillers & Lefort 2023): SimCLR + lambda x NT-Xent between the actual embedding y_t of
an augmented view and its prediction u([y0, e_p(p)]) from the original's y0 and the augmentation parameters
(docs/methods.md §2.1-2.3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Generator, Tensor, nn

from engine.augment import augment, equimod_vector, get_recipe, identity_view, param_stats
from engine.methods.losses import Gather, equimod_loss, local, nt_xent
from engine.models import equimod_predictor, param_encoder, projector


@dataclass(frozen=True)
class EquiModConfig:
    """Hyper-parameters (ADevillers/EquiMod SimCLR+EquiMod CIFAR-10 slurm defaults)."""

    temperature: float = 0.5  # tau_z
    temperature_y: float = 0.2  # tau_y
    equi_weight: float = 1.0  # lambda
    proj_hidden: tuple[int, ...] = (2048,)  # invariance projector = SimCLR's, for a like-for-like comparison
    proj_dim: int = 128
    eq_hidden: tuple[int, ...] = (2048, 2048)  # proj_head_eq "2048-2048-" (§2.2)
    y_dim: int = 128
    p_embed_dim: int = 128  # proj_head_t "128"
    lr_scale: float = 1.0
    recipe: str = "simclr"  # augmentation recipe of the views (engine.augment.RECIPES)
    gather: bool = True
    sync_bn: bool = True  # SyncBatchNorm under DDP, as the reference code (applied by engine.train.loop)


class EquiMod(nn.Module):
    """Backbone + invariance projector + equivariant projector + parameter encoder + predictor.

    The 15-d parameter vector is z-scored with ``param_mean``/``param_std`` (persistent buffers computed from the
    recipe by ``augment.param_stats``, so checkpoints carry them).
    """

    Config = EquiModConfig
    trainable = True
    spaces = ("backbone", "projector", "equivariant")  # embed()'s keys, in order

    def __init__(
        self, backbone: nn.Module, config: EquiModConfig = EquiModConfig(), image_size: int = 32
    ) -> None:
        super().__init__()
        self.config, self.image_size = config, image_size
        self.gather: Gather = local  # build_method installs the trainer's (DDP) gather
        self.backbone = backbone
        feat = backbone.feat_dim
        mean, std = param_stats(get_recipe(config.recipe, image_size), (image_size, image_size))
        self.register_buffer("param_mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("param_std", torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6).clone())
        self.projector = projector(feat, config.proj_hidden, config.proj_dim)
        self.eq_projector = projector(feat, config.eq_hidden, config.y_dim)
        self.param_encoder = param_encoder(self.param_mean.numel(), config.p_embed_dim)
        self.predictor = equimod_predictor(config.y_dim, config.p_embed_dim)

    def make_views(self, images_uint8: Tensor, generator: Generator) -> dict[str, Tensor]:
        """{"x0" original, "x1", "x2" views, "p1", "p2" raw 15-d parameter vectors [B, 15]}."""
        hw = tuple(images_uint8.shape[-2:])
        r = get_recipe(self.config.recipe, self.image_size)
        x1, a1 = augment(images_uint8, r, generator)
        x2, a2 = augment(images_uint8, r, generator)
        return {
            "x0": identity_view(images_uint8, self.image_size),
            "x1": x1,
            "x2": x2,
            "p1": equimod_vector(a1, hw).float(),
            "p2": equimod_vector(a2, hw).float(),
        }

    def predict(self, y0: Tensor, param_vector: Tensor) -> Tensor:
        """Predicted y after an augmentation: ``u([y0, e_p((p - mean) / std)])``.

        ``y0``: [B, y_dim] equivariant embeddings of the originals; ``param_vector``: raw [B, 15] vectors
        (``augment.equimod_vector``); z-scoring happens here.
        """
        p = (param_vector.to(self.param_mean.dtype) - self.param_mean) / self.param_std
        return self.predictor(torch.cat([y0, self.param_encoder(p.to(y0.dtype))], dim=1))

    def forward(self, views: dict[str, Tensor]) -> dict[str, Tensor]:
        n = views["x1"].shape[0]
        # All 3N images in ONE backbone pass: x0 shares BN statistics with the views, as EquiMod's code does.
        h = self.backbone(torch.cat([views["x1"], views["x2"], views["x0"]]))
        z = self.projector(h[: 2 * n])
        loss_inv = nt_xent(z[:n], z[n:], self.config.temperature, gather=self.gather)
        y = self.eq_projector(h)  # BN over all 3N rows, like the code
        y_t, y0 = y[: 2 * n], y[2 * n :]
        y_hat = self.predict(torch.cat([y0, y0]), torch.cat([views["p1"], views["p2"]]))
        loss_equi = equimod_loss(y_t, y_hat, self.config.temperature_y, gather=self.gather)
        with torch.no_grad():  # EquiMod's eqgain: how much better than predicting "no displacement"
            y_t32, y0_32 = y_t.float(), torch.cat([y0, y0]).float()
            eqgain = (F.cosine_similarity(y_t32, y_hat.float()) - F.cosine_similarity(y_t32, y0_32)).mean()
        return {
            "loss": loss_inv + self.config.equi_weight * loss_equi,
            "loss/inv": loss_inv.detach(),
            "loss/equi": loss_equi.detach(),
            "eqgain": eqgain,
        }

    def embed(self, x01: Tensor) -> dict[str, Tensor]:
        """{"backbone" h, "projector" z, "equivariant" y (the space predict() works in)}."""
        h = self.backbone(x01)
        return {"backbone": h, "projector": self.projector(h), "equivariant": self.eq_projector(h)}
