"""Optimisers (SGD, LARS) and the per-step warmup + cosine learning-rate schedule, as small pure functions.

The schedule follows E-SSL's CIFAR code (``adjust_learning_rate``): linear warm-up from 0 over the warm-up steps,
then a half cosine from the peak down to ``final_ratio * peak`` (0 = "cosine to 0", docs/methods.md §1.4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


def scaled_lr(base_lr: float, batch_size: int, lr_scale: float = 1.0) -> float:
    """Peak learning rate: ``base_lr * batch_size / 256 * lr_scale`` (linear scaling rule; E-SSL doubles it)."""
    return base_lr * batch_size / 256 * lr_scale


def lr_at(step: int, peak: float, warmup_steps: int, total_steps: int, final_ratio: float = 0.0) -> float:
    """Learning rate for optimisation step ``step`` (0-based) of ``total_steps``."""
    if step < warmup_steps:
        return peak * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    q = 0.5 * (1 + math.cos(math.pi * min(step - warmup_steps, span) / span))
    return peak * q + peak * final_ratio * (1 - q)


def param_groups(model: nn.Module, weight_decay: float, exclude_bn_bias: bool) -> list[dict]:
    """Two groups: weights, and 1-d parameters (BN affine, biases). With ``exclude_bn_bias`` the latter get no
    weight decay and no LARS adaptation (SimCLR/BYOL practice)."""
    decay, plain = [], []
    for p in model.parameters():
        if p.requires_grad:
            (plain if p.ndim <= 1 else decay).append(p)
    if not exclude_bn_bias:
        return [{"params": decay + plain, "weight_decay": weight_decay, "lars": True}]
    return [
        {"params": decay, "weight_decay": weight_decay, "lars": True},
        {"params": plain, "weight_decay": 0.0, "lars": False},
    ]


class LARS(torch.optim.Optimizer):
    """SGD + momentum with layer-wise trust ratio ``eta * ||w|| / ||g + wd w||`` on groups with ``lars=True``."""

    def __init__(
        self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta=1e-3
    ):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta})

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=g["weight_decay"])
                if g.get("lars", True):
                    w, n = torch.norm(p), torch.norm(d)
                    d = d.mul(torch.where((w > 0) & (n > 0), g["eta"] * w / n, torch.ones_like(w)))
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = d.clone()
                else:
                    buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])
        return None


def _sgd(groups: list[dict], lr: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        [{k: v for k, v in g.items() if k != "lars"} for g in groups], lr=lr, momentum=momentum
    )


def _lars(groups: list[dict], lr: float, momentum: float) -> torch.optim.Optimizer:
    return LARS(groups, lr=lr, momentum=momentum)


# name -> (factory, exclude BN/bias from wd and adaptation). SGD keeps the CIFAR papers' wd on every parameter.
OPTIMIZERS: dict[str, tuple[Callable[[list[dict], float, float], torch.optim.Optimizer], bool]] = {
    "sgd": (_sgd, False),
    "lars": (_lars, True),
}


def build_optimizer(
    name: str, model: nn.Module, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Optimizer ``name`` (``sgd`` | ``lars``) over ``model``'s trainable parameters."""
    factory, exclude = OPTIMIZERS[name]
    return factory(param_groups(model, weight_decay, exclude), lr, momentum)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
