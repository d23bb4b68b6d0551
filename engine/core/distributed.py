"""Tiny torch.distributed helpers that degrade to single-process identities when DDP is not initialised.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) :func:`init_from_env` joins the process group: gloo on
CPU, NCCL on CUDA with each rank on its ``LOCAL_RANK`` GPU. Without torchrun every helper is a no-op.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.nn.functional import all_gather


def env_world_size() -> int:
    """The world size torchrun announces (``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def backend_for(device: torch.device) -> str:
    """The process-group backend for ``device``: NCCL on CUDA, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` for a CUDA device under torchrun, else ``device`` unchanged."""
    if device.type != "cuda" or "LOCAL_RANK" not in os.environ:
        return device
    return torch.device("cuda", int(os.environ["LOCAL_RANK"]))


def init_from_env(device: torch.device) -> torch.device:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (once) and return this rank's device.

    A single process (no torchrun, or ``--nproc_per_node 1``) joins nothing and gets ``device`` back.
    """
    if env_world_size() <= 1:
        return device
    device = rank_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device))
    return device


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    """Wait for every rank (no-op on a single process)."""
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group after every rank got here (no-op when none is initialised).

    The barrier first: tearing gloo down while a peer is still inside a collective can abort that peer.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


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
