"""The shipped checkpoints load, carry what the app needs, and really learned: each trained method's backbone kNN
accuracy on shapes is well above the shipped random-init (`none`) model's, on images none of them trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.data import load_dataset
from engine.eval.knn import knn_accuracy
from engine.train.checkpoint import load_model
from engine.train.data import embed_backbone

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
TRAINED = ("simclr", "essl", "equimod", "clever")
N_BANK, N_QUERY = 4000, 1000


@pytest.fixture(scope="module")
def shapes_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Bank: the tail of the train split (the shipped runs trained on a 5,000-item subset drawn from all 20,000;
    # overlap does not matter for a kNN bank). Queries: the test split, never seen in training.
    train, test = load_dataset("shapes", "train"), load_dataset("shapes", "test")
    return train.images[-N_BANK:], train.labels[-N_BANK:], test.images[:N_QUERY], test.labels[:N_QUERY]


def _knn(name: str, split) -> float:
    model, _ = load_model(CHECKPOINTS / f"shapes-{name}.json")
    bank_x, bank_y, query_x, query_y = split
    cpu = torch.device("cpu")
    bank, queries = embed_backbone(model, bank_x, cpu, False), embed_backbone(model, query_x, cpu, False)
    return knn_accuracy(bank, torch.from_numpy(bank_y), queries, torch.from_numpy(query_y), 10, 200, 0.1)


def test_checkpoints_are_small_and_self_describing() -> None:
    total = sum(p.stat().st_size for p in CHECKPOINTS.iterdir())
    assert total < 50e6
    for name in (*TRAINED, "none"):
        info = json.loads((CHECKPOINTS / f"shapes-{name}.json").read_text())
        assert info["method"] == name and info["config"]["data"]["dataset"] == "shapes"


def test_trained_methods_beat_random_init_by_a_wide_margin(shapes_split) -> None:
    floor = _knn("none", shapes_split)
    scores = {name: _knn(name, shapes_split) for name in TRAINED}
    assert floor < 0.3, floor  # 10 balanced classes: chance is 0.1
    for name, acc in scores.items():
        assert acc > floor + 0.2, (name, acc, floor)


CIFAR_SHIPPED = ("simclr", "essl", "equimod", "clever")


@pytest.mark.parametrize("name", CIFAR_SHIPPED)
def test_cifar10_cpu_baselines_load_and_describe_their_training(name: str) -> None:
    """The CIFAR-10 study's seed-0 models (width 0.125, 10 epochs, 10k images) ship for the dashboard."""
    info = json.loads((CHECKPOINTS / f"cifar10-{name}.json").read_text())
    cfg = info["config"]
    assert info["method"] == name and cfg["data"]["dataset"] == "cifar10"
    assert (cfg["model"]["width"], cfg["optim"]["epochs"], cfg["data"]["train_subset"]) == (0.125, 10, 10_000)
    model, _ = load_model(CHECKPOINTS / f"cifar10-{name}.json")
    x = torch.rand(2, 3, 32, 32)
    out = model.embed(x)
    assert out["backbone"].shape == (2, 64) and torch.isfinite(out["backbone"]).all()
