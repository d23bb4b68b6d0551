"""What a training run reads: the seeded training subset (in RAM), the kNN monitor's bank and queries, host ->
device transfer of uint8 batches, and backbone embeddings for the monitor."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.augment import preprocess
from engine.core.errors import EquiLabError
from engine.data import IN_RANDOM_ORDER, DataSpec
from engine.eval.knn import knn_accuracy
from engine.train.config import Config


def to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``[B,H,W,3]`` numpy -> uint8 ``[B,3,H,W]`` tensor on ``device`` (pinned, non-blocking on CUDA)."""
    x = torch.from_numpy(np.array(images, copy=None if images.flags.writeable else True, order="C")).permute(
        0, 3, 1, 2
    )
    if device.type == "cuda":
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def autocast(device: torch.device, enabled: bool):
    return (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and enabled else nullcontext()
    )


@torch.no_grad()
def embed_backbone(model: nn.Module, images: np.ndarray, device: torch.device, amp: bool, batch: int = 512):
    """Backbone embeddings of un-augmented uint8 images (float32, CPU), through ``engine.augment.preprocess``."""
    was = model.training
    model.eval()
    outs = []
    for i in range(0, len(images), batch):
        x = preprocess(to_device(images[i : i + batch], device), model.image_size)
        with autocast(device, amp):
            outs.append(model.embed(x)["backbone"].float().cpu())
    model.train(was)
    return torch.cat(outs)


@dataclass(frozen=True)
class RunData:
    train_images: np.ndarray
    bank_images: np.ndarray
    bank_labels: np.ndarray
    query_images: np.ndarray
    query_labels: np.ndarray
    num_classes: int
    image_side: int
    train_labels: np.ndarray | None = None  # class of each train_images row (-1: unlabelled)


def run_spec(cfg: Config) -> DataSpec:
    """The data spec of a run's train split (``data.dataset``, ``data.root``, ``data.options``)."""
    return DataSpec(cfg.data.dataset, "train", cfg.data.root, cfg.data.options)


def monitor_queries(n_test: int, n: int, in_random_order: bool) -> np.ndarray:
    """Which ``n`` test items the monitor (kNN, online linear) queries, sorted: a uniform sample, the same for
    every seed. On a generated split the first ``n`` are one (kept, so earlier runs reproduce); elsewhere a fixed
    seeded draw, since a class-sorted folder's first items are all one class."""
    if in_random_order:
        return np.arange(min(n, n_test))
    # not engine.eval.context.sample_ids (another draw): the reported CIFAR-10 online figures used this one
    return np.sort(np.random.default_rng(np.random.SeedSequence([0, 8])).permutation(n_test)[:n])


def load_run_data(cfg: Config) -> RunData:
    """The training subset (in RAM) and the kNN bank/queries, chosen by a seeded permutation."""

    d = cfg.data
    spec = run_spec(cfg)
    train = spec.load()
    in_random_order = d.dataset in IN_RANDOM_ORDER
    order = np.random.default_rng(np.random.SeedSequence([cfg.train.seed, 7])).permutation(len(train))
    subset = np.sort(order[: d.train_subset] if d.train_subset else order)
    images = np.ascontiguousarray(train.images[subset])
    # the bank: a uniform sample of the training subset (its lowest indices are one on a generated dataset only)
    bank = np.sort(subset[: d.knn_bank] if in_random_order else order[: min(d.knn_bank, len(subset))])
    try:
        test = spec.with_split("test").load()
        q = monitor_queries(len(test), d.knn_queries, in_random_order)
        q_img, q_lab = test.images[q], test.labels[q]
    except EquiLabError:  # no test split: query held-out train items
        held = np.sort(order[len(subset) :][: d.knn_queries])
        q_img, q_lab = train.images[held], train.labels[held]
    return RunData(
        images,
        np.ascontiguousarray(train.images[bank]),
        train.labels[bank],
        np.ascontiguousarray(q_img),
        np.asarray(q_lab),
        len(train.classes),
        int(train.images.shape[1]),
        np.asarray(train.labels[subset]),
    )


def knn_monitor(model: nn.Module, data: RunData, cfg: Config, device: torch.device) -> float:
    """Weighted kNN accuracy (backbone, cosine) of the held-out queries against the un-augmented train bank."""
    if len(data.query_images) == 0:
        return float("nan")
    bank = embed_backbone(model, data.bank_images, device, cfg.train.amp)
    queries = embed_backbone(model, data.query_images, device, cfg.train.amp)
    labels = torch.from_numpy(data.bank_labels)
    return knn_accuracy(
        bank,
        labels,
        queries,
        torch.from_numpy(data.query_labels),
        data.num_classes,
        cfg.train.knn_k,
        cfg.train.knn_t,
    )
