"""Tiny torch.distributed helpers that degrade to single-process identities when DDP is not initialised."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.nn.functional import all_gather


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping gradients to every rank's input.

    Uses ``torch.distributed.nn.functional.all_gather`` (autograd-aware); identity on a single process.
    """
    if not is_distributed():
        return x
    return torch.cat(all_gather(x), dim=0)


def gather_rows(x: Tensor) -> tuple[Tensor, int]:
    """The DDP ``engine.methods.losses.Gather``: every rank's rows of ``x`` (with gradients) and where this
    rank's rows start among them (every rank holds the same number of rows)."""
    return all_gather_with_grad(x), rank() * x.shape[0]
