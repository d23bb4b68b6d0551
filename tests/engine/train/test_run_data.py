"""What a run reads for its monitor: the kNN bank and the queries (also the online classifier's) must be uniform
samples. A class-sorted folder's first items are one class (CIFAR-10's JPEG tree: the first 1,000 test images are
all airplanes), so there they are drawn; on a generated dataset the first items are kept, so earlier runs
reproduce."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import IN_RANDOM_ORDER, DataSpec
from engine.train.config import load_config
from engine.train.data import load_run_data, monitor_queries

CLASSES, PER_CLASS = ("a", "b", "c"), 10


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUILAB_CACHE", str(tmp_path / "cache"))


def sorted_folder(root: Path) -> Path:
    """root/{train,test}/{a,b,c}/ with 10 images each; every class has its own colour."""
    for split in ("train", "test"):
        for k, name in enumerate(CLASSES):
            for i in range(PER_CLASS):
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (80 * k, i, 0)).save(path)
    return root


def folder_config(root: Path, seed: int = 0):
    return load_config(
        None,
        {"data.dataset": "imagefolder", "data.root": str(root), "data.options.image_size": 8, "train.seed": seed,
         "data.train_subset": 0, "data.knn_bank": PER_CLASS, "data.knn_queries": PER_CLASS},
    )  # fmt: skip


def test_a_class_sorted_folder_gets_a_bank_and_queries_from_every_class(tmp_path):
    root = sorted_folder(tmp_path / "data")
    data = load_run_data(folder_config(root))
    test = DataSpec("imagefolder", "test", str(root), {"image_size": 8}).load()
    assert test.labels[:PER_CLASS].tolist() == [0] * PER_CLASS  # the trap: the first ten are one class
    assert len(data.query_labels) == len(data.bank_labels) == PER_CLASS
    assert len(set(data.query_labels.tolist())) == len(set(data.bank_labels.tolist())) == len(CLASSES)
    queries = monitor_queries(len(test), PER_CLASS, in_random_order=False)
    assert np.array_equal(data.query_labels, test.labels[queries])  # the images match their labels
    assert np.array_equal(data.query_images, test.images[queries])
    other = load_run_data(folder_config(root, seed=1))
    assert np.array_equal(other.query_labels, data.query_labels)  # the same queries for every seed
    assert not np.array_equal(other.bank_labels, data.bank_labels)  # the bank follows the seed's subset


def test_generated_datasets_keep_their_first_items_so_earlier_runs_reproduce():
    assert {"shapes", "shapes_upright", "shapes_colour"} == IN_RANDOM_ORDER
    overrides = {"data.dataset": "shapes", "data.options.size": 600, "data.train_subset": 300,
                 "data.knn_bank": 100, "data.knn_queries": 50}  # fmt: skip
    data = load_run_data(load_config(None, overrides))
    spec = DataSpec("shapes", "train", None, {"size": 600})
    test = spec.with_split("test").load()
    assert np.array_equal(data.query_images, test.images[:50])
    order = np.random.default_rng(np.random.SeedSequence([0, 7])).permutation(len(spec.load()))
    assert np.array_equal(data.bank_labels, spec.load().labels[np.sort(order[:300])[:100]])
