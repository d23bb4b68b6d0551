"""A run trained on a dataset variant (``data.options``) is embedded and evaluated on THAT variant, through the
DataSpec written into its checkpoint and stores; the lab's original-image embedding is the stored vector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.augment import preprocess
from engine.cli import main
from engine.data import DataSpec, load_dataset
from engine.lab.image import SliderValues, lab_views
from engine.store.build import EmbedJob, build_store, ensure_store, parse_data_options, store_path
from engine.store.format import StoreOptions, open_store, rebuild_command
from engine.store.items import store_images, store_spec
from engine.train.checkpoint import data_spec, load_model, read_info
from engine.train.config import load_config
from engine.train.loop import fit

VARIANT = {"seed": 3, "size": 160}  # not the default shapes variant (seed 0, 20k/5k items)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("variant")
    cfg = load_config(
        None,
        [
            *(f"data.options.{k}={v}" for k, v in VARIANT.items()),
            "data.train_subset=128",
            "data.knn_bank=64",
            "data.knn_queries=32",
            "optim.batch_size=64",
            "optim.epochs=1",
            "optim.warmup_epochs=0.5",
            "model.width=0.0625",
            "model.method=equimod",
            "train.knn_every=1",
            "train.device=cpu",
            f"train.out={tmp / 'run'}",
        ],
    )
    return fit(cfg) / "checkpoints" / "last.json", tmp / "stores"


@pytest.fixture(scope="module")
def evaluated(run) -> tuple[Path, Path]:
    """`python -m engine eval --checkpoint` on the run (its test store pre-built without UMAP, to keep it quick)."""
    ckpt, stores = run
    test = ensure_store(ckpt, "shapes", "test", store_root=stores, options=StoreOptions(umap=False))
    argv = [
        "eval",
        "--checkpoint",
        str(ckpt),
        "--dataset",
        "shapes",
        "--stores",
        str(stores),
        "--device",
        "cpu",
    ]
    assert (
        main([*argv, "--only", "knn", "displacement", "--n-fit", "64", "--n-eval", "32", "--n-sweep", "8"])
        == 0
    )
    return test, store_path(ckpt, "shapes", "train", stores)


def test_checkpoint_records_the_variant(run):
    info = read_info(run[0])
    assert data_spec(info) == DataSpec("shapes", "train", None, VARIANT)
    assert info["data"]["options"] == VARIANT


@pytest.mark.parametrize("split", ["test", "train"])
def test_stores_hold_the_variants_items(evaluated, split):
    store = open_store(evaluated[split == "train"])
    want = load_dataset("shapes", split, **VARIANT)
    assert store_spec(store.manifest) == DataSpec("shapes", split, None, VARIANT)
    assert store.n == len(want) == VARIANT["size"]
    np.testing.assert_array_equal(store_images(store), want.images)
    np.testing.assert_array_equal(store.thumbnails, want.images)  # 32 px items are stored as they are
    np.testing.assert_array_equal(store.labels, want.labels)
    default = load_dataset("shapes", split, size=VARIANT["size"])
    assert not np.array_equal(store_images(store), default.images)
    ids = np.array([5, 0, 17])
    np.testing.assert_array_equal(store_images(store, ids), want.images[ids])


def test_stored_embeddings_are_the_variants_images_through_preprocess(run, evaluated):
    model, _ = load_model(run[0])
    store = open_store(evaluated[0])
    images = load_dataset("shapes", "test", **VARIANT).images[:16]
    with torch.no_grad():
        want = model.embed(preprocess(images, model.image_size))
    for space in store.spaces:
        np.testing.assert_allclose(store.embeddings(space)[:16], want[space].numpy(), atol=1e-5)


def test_evaluation_ran_on_the_variant_store(evaluated):
    rows = json.loads((evaluated[0] / "eval.json").read_text())
    assert rows["source"]["data"]["options"] == VARIANT
    assert {r["evaluator"] for r in rows["results"]} >= {"knn", "displacement"}


def test_store_dir_and_rebuild_command_name_the_variant(run, evaluated):
    ckpt, stores = run
    test = evaluated[0]
    assert test.name.startswith("shapes-test-") and test != stores / test.parent.name / "shapes-test"
    cmd = rebuild_command(open_store(test).manifest)
    assert "--data-option seed=3" in cmd and "--data-option size=160" in cmd
    flags = [a for a in cmd.split() if "=" in a and not a.startswith("-")]
    assert store_path(ckpt, "shapes", "test", stores, parse_data_options(flags)) == test
    # the default variant is another store: explicit empty options, the old directory name
    assert store_path(ckpt, "shapes", "test", stores, {}) == test.parent / "shapes-test"


def test_a_store_of_the_default_variant_is_rebuilt_not_reused(run, tmp_path):
    ckpt, _ = run
    # a store built before the spec existed (the default variant at the variant's path) is stale
    path = build_store(
        EmbedJob(ckpt, "shapes", "test", store_root=tmp_path, device="cpu", data_options={"size": 40}),
        StoreOptions(umap=False),
    )
    variant = store_path(ckpt, "shapes", "test", tmp_path)
    variant.parent.mkdir(parents=True, exist_ok=True)
    path.rename(variant)
    again = ensure_store(ckpt, "shapes", "test", store_root=tmp_path, options=StoreOptions(umap=False))
    assert again == variant and open_store(again).n == VARIANT["size"]


def test_lab_embedding_of_a_store_item_is_its_stored_vector(run, evaluated):
    model, _ = load_model(run[0])
    store = open_store(evaluated[0])
    for i in (0, 7):
        image = store_images(store, [i])[0]
        for space in ("backbone", "equivariant"):
            d = lab_views(model, image, [SliderValues()], space)
            np.testing.assert_allclose(d.z0[0], store.embeddings(space)[i], atol=1e-5)
            assert d.norm[0] == 0.0  # the identity view is the original: no displacement at all
