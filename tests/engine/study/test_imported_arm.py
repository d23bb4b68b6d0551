"""An imported model in a study: an evaluation-only arm (``study run --checkpoint``) evaluates a torchvision
ResNet-18 with the study's evaluators and seeds, without training, and reports beside a trained arm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from engine.core.errors import CheckpointError, ConfigError
from engine.imports.convert import import_checkpoint
from engine.study.registry import get_study
from engine.study.report import load_results, write_report
from engine.study.run import EvalSizes, run_study, with_checkpoints

TINY = {"data.train_subset": 128, "optim.batch_size": 64, "optim.epochs": 1, "model.width": 0.0625}
SIZES = EvalSizes(probe_cap=120, n_fit=48, n_eval=48, n_sweep=4, store_limit=120)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random torchvision resnet18 state dict, saved as torchvision users do, imported at 32 px."""
    tmp = tmp_path_factory.mktemp("imported")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp / "my-resnet.pth")
    return import_checkpoint(
        tmp / "my-resnet.pth", "torchvision", tmp / "my-resnet", arch="resnet18", input_size=32
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, imported: Path):
    out = tmp_path_factory.mktemp("study")
    paths = run_study("shapes", [0], out, ["none"], TINY, sizes=SIZES, device="cpu", checkpoints=[imported])
    return out, paths


def test_imported_arm_is_evaluated_without_training(study, imported: Path) -> None:
    out, paths = study
    assert sorted(p.parent.name for p in paths) == ["my-resnet-s0", "none-s0"]
    doc = json.loads((out / "my-resnet-s0" / "eval.json").read_text())
    assert (doc["arm"], doc["method"], doc["seed"]) == ("my-resnet", "imported", 0)
    assert doc["evaluation_only"] and doc["source"]["checkpoint"] == str(imported)
    assert not (out / "my-resnet-s0" / "checkpoints").exists()  # nothing trained, nothing saved
    values = {(r["space"], r["metric"]): r["value"] for r in doc["results"]}
    assert 0.0 <= values[("backbone", "knn_acc")] <= 1.0 and ("backbone", "r2_hue") in values
    # the same protocol as the trained arm (the study's recipe), so the rows compare
    none = json.loads((out / "none-s0" / "eval.json").read_text())
    assert doc["protocol"]["recipe"] == none["protocol"]["recipe"] == "shapes"
    meta = json.loads((out / "study.json").read_text())
    assert (
        meta["arms"][-1] == "my-resnet"
        and "none" in meta["arms"]
        and meta["checkpoints"] == {"my-resnet": str(imported)}
    )


def test_rerun_skips_and_report_has_the_imported_row(study, imported: Path, tmp_path: Path) -> None:
    out, paths = study
    before = {p: p.stat().st_mtime_ns for p in paths}
    again = run_study("shapes", [0], out, ["none"], TINY, sizes=SIZES, device="cpu", checkpoints=[imported])
    assert {p: p.stat().st_mtime_ns for p in again} == before
    assert {d["arm"] for d in load_results(out)} == {"none", "my-resnet"}
    write_report(out, tmp_path / "report")
    md = (tmp_path / "report" / "tables.md").read_text()
    assert "| my-resnet |" in md and md.index("| none |") < md.index("| my-resnet |")


def test_checkpoint_arm_errors(tmp_path: Path, imported: Path) -> None:
    arms = get_study("shapes").arms
    with pytest.raises(CheckpointError, match="not found"):
        with_checkpoints(arms, [tmp_path / "missing.json"])
    (tmp_path / "none.json").write_text(imported.read_text())  # an arm called like the study's own "none"
    with pytest.raises(ConfigError, match="used twice"):
        with_checkpoints(arms, [tmp_path / "none.json"])
