"""Tiny fixture roots for the app tests: two untrained checkpoints and their stores on a small shapes subset.

Nothing is trained: `none` (random-init backbone) and a second `none` with another seed are saved through the
engine's checkpoint writer, embedded on 160 shapes test images, and written with the engine's store writer.
Shared by tests/app (AppTest) and tests/browser (a real server), which load this file by path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.core.io import sha256_file
from engine.data import load_dataset
from engine.methods import build_method
from engine.store.format import StoreArrays, StoreOptions, write_store
from engine.train.checkpoint import save_checkpoint

N_ITEMS = 160
MODELS = {"shapes-none": 0, "shapes-none-b": 1}  # label -> init seed


def _embed(model, images: np.ndarray) -> dict[str, np.ndarray]:

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        out = model.embed(x)
    return {k: v.float().numpy() for k, v in out.items() if v.ndim == 2 and k != "rotation_logits"}


def build(root: Path) -> dict[str, str]:
    """Create checkpoints/, runs/, stores/ under ``root``; return the env vars that point the app at them."""

    dirs = {k: root / k for k in ("checkpoints", "runs", "stores")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("shapes", "test", size=N_ITEMS)
    images = np.array(ds.images)  # writable copy (the dataset is a read-only memmap)
    for label, seed in MODELS.items():
        torch.manual_seed(seed)
        model = build_method("none", width=0.125, image_size=32).eval()
        stem = dirs["checkpoints"] / label
        save_checkpoint(stem, model, config={"fixture": True}, epoch=0, step=0)
        weights = stem.with_suffix(".safetensors")
        source = {
            "checkpoint": str(weights),
            "checkpoint_sha256": sha256_file(weights),
            "method": "none",
            "dataset": "shapes",
            "split": "test",
            "dataset_options": {"size": N_ITEMS},
        }
        write_item_store(dirs, label, _embed(model, images), ds, images, source)
    return root_env(dirs)


def write_item_store(
    dirs: dict[str, Path], label: str, embeddings, ds, images: np.ndarray, source: dict
) -> None:
    """The store ``<label>-shapes-test`` of ``embeddings`` (space -> [N, D]) for the items of ``ds``, without UMAP."""

    arrays = StoreArrays(
        embeddings=embeddings,
        labels=np.asarray(ds.labels, dtype=np.int64),
        classes=tuple(ds.classes),
        images=images,
        meta={k: np.asarray(v) for k, v in ds.meta.items() if k != "path"},
    )
    write_store(dirs["stores"] / f"{label}-shapes-test", arrays, source, StoreOptions(umap=False))


def root_env(dirs: dict[str, Path]) -> dict[str, str]:
    """The env vars that point the app at ``dirs`` (checkpoints, runs, stores)."""
    return {f"EQUILAB_{k.upper()}": str(dirs[k]) for k in ("checkpoints", "runs", "stores")}
