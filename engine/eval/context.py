"""What every evaluator receives (the test and train stores, sizes, seed, device) and the item samples they share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.store.format import Store
from engine.store.items import store_images


@dataclass(frozen=True)
class EvalContext:
    test: Store
    train: Store
    probe_cap: int = 10_000  # train items for the probes; 0 = the whole train split
    n_fit: int = 4096  # train images for post-hoc displacement predictors
    n_eval: int = 1024  # test images for displacement / rotation / CLeVER scores
    seed: int = 0
    device: str = "cpu"
    n_sweep: int = 128  # test images per (family, strength) in the displacement sweeps
    probe: str = (
        "lbfgs"  # linear probe: "lbfgs" (logistic regression on stored features) or "sgd" (the papers')
    )
    probe_epochs: int = 100  # epochs of the "sgd" probe


PROTOCOL = (
    "protocol"  # the space of protocol records (recipe, probe); write_results lifts them out of the rows
)


def protocol_row(key: str, value: str) -> dict:
    """A record of how the evaluation measured (``eval.json``'s ``protocol[key] = value``), not a result."""
    return {"space": PROTOCOL, "metric": key, "value": float("nan"), "note": str(value)}


def sample_ids(n: int, cap: int, seed: int) -> np.ndarray:
    """All of range(n) (when ``cap`` is 0 or at least n), or ``cap`` of them drawn without replacement under
    ``seed`` (sorted)."""
    return (
        np.arange(n)
        if cap <= 0 or n <= cap
        else np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))
    )


def sample_images(store: Store, n: int, seed: int):
    """(uint8 [n, 3, H, W] tensor, ids): ``n`` of the store's items, reloaded through the store's data spec (the
    dataset variant it was embedded from; not the thumbnails)."""
    ids = sample_ids(store.n, n, seed)
    return torch.from_numpy(store_images(store, ids)).permute(0, 3, 1, 2), ids
