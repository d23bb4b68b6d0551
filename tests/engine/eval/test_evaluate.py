"""Store-level evaluation: kNN/linear/factor probes on planted stores, JSON + CSV output, CLI."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from engine.augment.pretext import get_task
from engine.cli import main
from engine.core.errors import ConfigError
from engine.data import DataSpec, load_dataset
from engine.eval.context import EvalContext
from engine.eval.displacement import load_predictor
from engine.eval.evaluate import (
    ARRAY_ONLY,
    TABLE_COLUMNS,
    add_commands,
    evaluate,
    pretext_accuracy,
    pretext_baselines,
    results_table,
    write_results,
)
from engine.methods import build_method
from engine.methods.protocol import logits_key
from engine.store.build import EmbedJob, build_store
from engine.store.format import StoreArrays, StoreOptions, open_store, write_store
from engine.train.checkpoint import save_checkpoint


def _store(path, n: int, seed: int):
    """'good' encodes class, scale and the symmetry-folded angle; 'noise' encodes nothing."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    scale = rng.uniform(0.5, 1.0, n)
    angle = rng.uniform(0, 360, n)
    sym = np.where(labels == 0, 0, labels + 1)
    folded = np.deg2rad(angle * sym)
    good = np.c_[
        np.eye(4)[labels] * 3, 4 * scale, np.cos(folded), np.sin(folded), rng.normal(size=(n, 5)) * 0.1
    ]
    arrays = StoreArrays(
        embeddings={"good": good, "noise": rng.normal(size=(n, 12))},
        labels=labels,
        classes=("circle", "a", "b", "c"),
        images=np.zeros((n, 8, 8, 3), np.uint8),
        meta={"scale": scale, "angle": angle, "symmetry": sym, "hue": rng.uniform(size=n)},
    )
    return open_store(write_store(path, arrays, {"checkpoint_sha256": "x"}, StoreOptions(umap=False)))


def test_array_evaluators_separate_good_from_noise(tmp_path):
    ctx = EvalContext(test=_store(tmp_path / "te", 300, 1), train=_store(tmp_path / "tr", 800, 0))
    rows = evaluate(ctx, ARRAY_ONLY)
    v = {(r["space"], r["metric"]): r["value"] for r in rows}
    assert v["good", "knn_acc"] > 0.95 and v["noise", "knn_acc"] < 0.45
    assert v["good", "linear_acc"] > 0.95 and v["noise", "linear_acc"] < 0.45
    assert v["good", "r2_scale"] > 0.9 and v["noise", "r2_scale"] < 0.1
    assert v["good", "r2_rotation"] > 0.9 and v["noise", "r2_rotation"] < 0.1
    assert v["good", "r2_hue"] < 0.1  # hue was not planted
    assert np.isnan(v["good", "r2_image_hue"])  # black images have no dominant hue: undefined
    js, cs = write_results(rows, tmp_path, {"test_store": "te"})
    doc = json.loads(js.read_text())
    results = [r for r in rows if r["space"] != "protocol"]  # protocol records are lifted out of the rows
    assert len(doc["results"]) == len(results) and doc["protocol"]["probe"].startswith("lbfgs")
    assert "800 train items" in doc["protocol"]["probe"]
    with open(cs) as f:
        assert len(list(csv.DictReader(f))) == len(results)
    with pytest.raises(ConfigError, match="unknown evaluators"):
        evaluate(ctx, ("nope",))


def test_eval_cli_on_stores(tmp_path, capsys):

    _store(tmp_path / "te", 120, 1)
    _store(tmp_path / "tr", 200, 0)
    rc = main(
        ["eval", "--store", str(tmp_path / "te"), "--train-store", str(tmp_path / "tr"), "--only", "knn"]
    )
    assert rc == 0 and "knn_acc" in capsys.readouterr().out
    assert (tmp_path / "te" / "eval.csv").is_file()


@pytest.mark.parametrize("method", ["essl", "clever", "equimod", "none"])
def test_model_evaluators_run_on_tiny_stores(tmp_path, method):
    """Rotation / CLeVER / displacement evaluators end to end on --limit stores of an untrained model."""

    torch.manual_seed(0)
    model = build_method(method, width=0.0625, image_size=32)
    ckpt = save_checkpoint(tmp_path / "ck", model, config={}, epoch=0, step=0).with_suffix(".safetensors")
    opts = StoreOptions(umap=False)
    stores = {
        split: open_store(
            build_store(EmbedJob(ckpt, "shapes", split, store_root=tmp_path, device="cpu", limit=n), opts)
        )
        for split, n in (("train", 96), ("test", 64))
    }
    ctx = EvalContext(test=stores["test"], train=stores["train"], n_fit=96, n_eval=64, n_sweep=8)
    which = {
        "essl": ("pretext",),
        "clever": ("clever",),
        "equimod": ("pretext", "displacement"),
        "none": ("displacement",),
    }[method]
    rows = evaluate(ctx, which)
    v = {(r["space"], r["metric"]): r["value"] for r in rows}
    if method == "essl":
        assert 0.0 <= v["rotation_logits", "rotation_acc"] <= 1.0
    assert all(np.isfinite(r["value"]) or r.get("note") for r in rows)  # undefined: NaN with its reason
    if method == "clever":
        assert {("invariant_part", "cross_view_cos"), ("equivariant_part", "cross_view_cos")} <= set(v)
        for part in ("invariant_part", "equivariant_part", "ir_head", "ef_head"):
            assert np.isfinite(v[part, "cross_view_cos"]) and np.isfinite(v[part, "between_image_cos"])
    if method in ("equimod", "none"):
        assert np.isfinite(v["backbone", "disp/method/cos"]) and ("backbone", "disp/shuffled_params/cos") in v
        for base in ("mean_delta", "params_only", "image_only"):
            assert ("backbone", f"disp/{base}/r2") in v
        gain = next(r for r in rows if r["space"] == "backbone" and r["metric"] == "disp/gain/cos")
        assert gain["note"].startswith("vs ")  # names the strongest baseline
        assert -1 <= v["backbone", "invariance/relative"] <= 1 and ("backbone", "invariance/raw_cos") in v
        assert any(m.startswith("sweep/rotation@") for _, m in v)
        # one identity: no sweep row at a neutral strength (rotation 0 = 360, hue 0, brightness 1)
        assert not any(
            m.startswith(("sweep/rotation@0/", "sweep/rotation@360/", "sweep/hue@0/")) for _, m in v
        )
        assert (
            v["backbone", "sweep/rotation@90/encoded"] == 0 and v["backbone", "sweep/hue@0.25/encoded"] == 1
        )
        blur = [r for r in rows if r["metric"].startswith("sweep/blur@") and "/disp/" in r["metric"]]
        assert blur and all(r["note"].startswith("not encoded") for r in blur)
        assert load_predictor(stores["test"].path, "backbone").space == "backbone"
        recipe = next(r for r in rows if r["space"] == "protocol" and r["metric"] == "recipe")["note"]
        # an arm without a recipe option is measured with its dataset's recipe (shapes), not simclr
        assert recipe == ("shapes" if method == "none" else "simclr")
    if method == "equimod":
        assert ("rotation_logits", "rotation_acc") not in v  # no rotation head: nothing reported
        method = [r for r in rows if r["space"] == "equivariant" and r["metric"] == "disp/method/cos"]
        assert method[0]["predictor"] == "equimod"
        posthoc = [r for r in rows if r["space"] == "backbone" and r["metric"] == "disp/method/cos"]
        assert posthoc[0]["predictor"] == "post-hoc"


def test_results_table_picks_each_models_displacement_space(tmp_path) -> None:

    def doc(name, rows):
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps({"source": {"checkpoint": f"checkpoints/{name}.json"}, "results": rows}))
        return f

    row = lambda space, metric, value: {"evaluator": "x", "space": space, "metric": metric, "value": value}  # noqa: E731
    a = doc(
        "shapes-equimod",
        [
            row("backbone", "knn_acc", 0.5),
            row("equivariant", "disp/method/cos", 0.75),
            row("projector", "disp/method/cos", 0.25),
        ],
    )
    b = doc("shapes-simclr", [row("projector", "disp/method/cos", 0.125)])
    lines = results_table([a, b]).splitlines()
    assert len(lines) == 4 and lines[0].count("|") == len(TABLE_COLUMNS) + 2
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert cells[0] == "shapes-equimod" and cells[1] == "0.500"
    assert (
        cells[[c[0] for c in TABLE_COLUMNS].index("cos(Δ, Δ̂)") + 1] == "0.750"
    )  # equivariant, not projector
    assert "0.125" in lines[3] and lines[3].count("—") == len(TABLE_COLUMNS) - 1
    c = doc(
        "shapes-none", [row("backbone", "disp/method/cos", 0.375)]
    )  # no projector: the backbone is scored
    assert "0.375" in results_table([c]).splitlines()[2]


def test_eval_cli_sizes_default_to_the_eval_context():

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["eval"])
    for f in dataclasses.fields(EvalContext):
        if f.default is not dataclasses.MISSING and f.name != "device":
            assert getattr(args, f.name) == f.default, f.name


class _Head(torch.nn.Module):
    """A stand-in pretext model: ``rule(x) -> logits`` under the task's logits key."""

    def __init__(self, task: str, rule) -> None:
        super().__init__()
        self.task, self.rule = task, rule

    def embed(self, x):

        return {logits_key(self.task): self.rule(x)}


@pytest.mark.parametrize("task", ["hflip", "rotation", "grayscale", "blur", "jigsaw"])
def test_a_constant_guess_scores_exactly_chance(task):

    k = get_task(task).n_labels
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (10, 3, 32, 32), dtype=np.uint8))
    model = _Head(task, lambda x: torch.zeros(len(x), k).index_fill_(1, torch.tensor([k - 1]), 1.0))
    assert pretext_accuracy(model, images, task, 32) == pytest.approx(1.0 / k)


def test_a_grayscale_detector_scores_one_and_baselines_come_from_the_dataset():

    def is_gray(x):  # label 1 = grayscale: every pixel's channels are equal
        gray = (x.amax(1) - x.amin(1)).flatten(1).amax(1) < 1e-6
        return torch.stack([(~gray).float(), gray.float()], 1)

    ds = load_dataset("shapes", "test", size=20)
    images = torch.from_numpy(np.array(ds.images[:20])).permute(0, 3, 1, 2)  # a writable copy
    assert pretext_accuracy(_Head("grayscale", is_gray), images, "grayscale", 32) == 1.0
    assert pretext_baselines("rotation", DataSpec("shapes_upright", "test")) == pytest.approx(
        {"chance": 0.25, "ceiling": 0.6325}, abs=1e-3
    )
    assert pretext_baselines("rotation", DataSpec("shapes", "test"))["ceiling"] == pytest.approx(
        0.25, abs=1e-3
    )
    assert pretext_baselines("jigsaw", DataSpec("cifar10", "test")) == {"chance": 1 / 24}  # no ceiling known


def _colour_store(path, n: int, seed: int):
    """'good' encodes a 3-way colour class, 'noise' does not."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(0, 3, n)
    arrays = StoreArrays(
        embeddings={
            "good": np.eye(3)[colour] * 3 + rng.normal(size=(n, 3)) * 0.1,
            "noise": rng.normal(size=(n, 3)),
        },
        labels=np.arange(n) % 2,
        classes=("a", "b"),
        images=np.zeros((n, 8, 8, 3), np.uint8),
        meta={"colour_class": colour},
    )
    return open_store(write_store(path, arrays, {"checkpoint_sha256": "x"}, StoreOptions(umap=False)))


def test_colour_class_probe_beside_its_chance(tmp_path):
    test = _colour_store(tmp_path / "te", 300, 1)
    rows = evaluate(EvalContext(test=test, train=_colour_store(tmp_path / "tr", 600, 0)), ("factors",))
    v = {(r["space"], r["metric"]): r["value"] for r in rows}
    assert v["good", "colour_class_acc"] > 0.95 and v["noise", "colour_class_acc"] < 0.5
    majority = np.bincount(test.meta["colour_class"].to_numpy()).max() / 300
    assert v["good", "colour_class_chance"] == pytest.approx(majority)
