"""`study collect`: runs trained elsewhere (the GPU session) become a study directory whose results are the trainer's
own monitors; a run that is not one of the study's arms, unfinished, or set differently from the others is refused
before anything is written."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core.errors import ConfigError
from engine.study.collect import collect
from engine.study.registry import STUDIES, Study, arm_config, get_study
from engine.study.report import write_report
from engine.train.config import to_yaml
from engine.train.loop import fit

ROOT = Path(__file__).resolve().parents[3]
# The paper study at the GPU session's short schedule (keys the study leaves free; recorded as its "extra").
SHORT = {"optim.epochs": 14, "optim.warmup_epochs": 1.0, "train.knn_every": 3}


def fake_run(tmp: Path, arm: str, seed: int, knn: list[float], online: list[float], **extra) -> Path:
    """A paper_cifar10 run directory as the GPU session leaves it: the arm's resolved config.yaml and a
    metrics.jsonl with the given monitor values (one epoch per online value, kNN at every third and the last)."""
    study = get_study("paper_cifar10")
    run = tmp / f"{arm}-{seed}"
    cfg = arm_config(
        study, next(a for a in study.arms if a.name == arm), seed, run, {**SHORT, **extra}, "/data"
    )
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(cfg))
    lines, k = [], iter(knn)
    for epoch, acc in enumerate(online, 1):
        row = {"epoch": epoch, "step": epoch * 97, "loss_epoch": 6.0, "online_linear_acc": acc}
        if epoch % 3 == 0 or epoch == len(online):
            row["knn_acc"] = next(k)
        lines.append(json.dumps(row))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def monitors(knn_last: float, online_last: float, epochs: int = 14) -> tuple[list[float], list[float]]:
    knn = [0.1] * (epochs // 3 + (epochs % 3 != 0) - 1) + [knn_last]
    return knn, [0.2] * (epochs - 1) + [online_last]


def test_collect_and_report_give_the_last_epochs_monitors_with_their_spread(tmp_path):
    runs = [
        fake_run(tmp_path / "r", "simclr", 0, *monitors(0.40, 0.50)),
        fake_run(tmp_path / "r", "simclr", 1, *monitors(0.60, 0.54)),
        fake_run(tmp_path / "r", "essl", 0, *monitors(0.70, 0.71)),
    ]
    out = tmp_path / "study"
    paths = collect("paper_cifar10", runs, out)
    assert sorted(p.parent.name for p in paths) == ["essl-s0", "simclr-s0", "simclr-s1"]
    doc = json.loads((out / "simclr-s1" / "eval.json").read_text())
    assert doc["source"]["results"] == "training monitors, last epoch"
    assert {(r["space"], r["metric"]): r["value"] for r in doc["results"]} == {
        ("knn_monitor", "acc"): 0.60,
        ("online_linear", "acc"): 0.54,
    }
    assert (out / "simclr-s1" / "config.yaml").read_text() == (runs[1] / "config.yaml").read_text()
    record = json.loads((out / "study.json").read_text())
    assert record["extra"] == SHORT and record["arms"] == ["simclr", "essl", "equimod"]
    assert record["seeds"] == [0, 1] and record["settings"]["model.width"] == 1.0

    written = write_report(out, tmp_path / "report")
    assert [p.name for p in written] == ["tables.md", "summary.json"]  # no empty probe or sweep plots
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    knn = summary["metrics"]["simclr"]["knn_monitor/acc"]
    assert (
        knn["mean"] == pytest.approx(0.5) and knn["std"] == pytest.approx(math.sqrt(0.02)) and knn["n"] == 2
    )
    assert summary["extra"] == SHORT
    md = (tmp_path / "report" / "tables.md").read_text()
    assert "| simclr | 2 | 0.500 ± 0.141 | 0.520 ± 0.028 |" in md
    assert "| essl | 1 | 0.700 | 0.710 |" in md and "| equimod | 0 |" not in md
    assert "R² hue" not in md  # no column of measures nothing here measured


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ({"model.width": 0.5}, "model.width = 0.5 (arm simclr: 1.0)"),
        ({"model.options.lr_scale": 2.0}, "model.options"),
    ],
)
def test_a_run_set_otherwise_than_every_arm_is_refused_with_the_key(tmp_path, edit, why):
    run = fake_run(tmp_path / "r", "simclr", 0, *monitors(0.4, 0.5), **edit)
    with pytest.raises(ConfigError, match="no arm of the study has this run's config") as e:
        collect("paper_cifar10", [run], tmp_path / "study")
    assert why in str(e.value)
    assert not (tmp_path / "study").exists()


def test_unfinished_runs_mixed_schedules_and_duplicates_are_refused_before_anything_is_written(tmp_path):
    good = fake_run(tmp_path / "a", "simclr", 0, *monitors(0.4, 0.5))
    cut = fake_run(tmp_path / "b", "essl", 0, *monitors(0.4, 0.5, epochs=9))  # config says 14
    with pytest.raises(ConfigError, match="stopped at epoch 9 of 14"):
        collect("paper_cifar10", [good, cut], tmp_path / "study")
    longer = fake_run(tmp_path / "c", "essl", 0, *monitors(0.4, 0.5, epochs=20), **{"optim.epochs": 20})
    with pytest.raises(ConfigError, match="differ in settings the study does not fix"):
        collect("paper_cifar10", [good, longer], tmp_path / "study")
    again = fake_run(tmp_path / "d", "simclr", 0, *monitors(0.4, 0.5))
    with pytest.raises(ConfigError, match="are both simclr seed 0"):
        collect("paper_cifar10", [good, again], tmp_path / "study")
    with pytest.raises(ConfigError, match="is not a training run"):
        collect("paper_cifar10", [tmp_path], tmp_path / "study")
    assert not (tmp_path / "study").exists()


def test_the_cli_prints_one_line_for_a_refused_run(tmp_path):
    run = fake_run(tmp_path / "r", "simclr", 0, *monitors(0.4, 0.5, epochs=9))
    p = subprocess.run(
        [sys.executable, "-m", "engine", "study", "collect", "paper_cifar10", str(run), "--out", str(tmp_path / "s")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [f"error: {run}: the run stopped at epoch 9 of 14; "
                                              "finish it (python -m engine train --resume) before collecting it"]  # fmt: skip


def test_a_real_training_runs_monitors_are_what_collect_reads(tmp_path, monkeypatch):
    """The trainer's own metrics.jsonl (column names, last epoch) through collect, on a tiny monitored study."""
    settings = {
        "model.width": 0.0625, "data.train_subset": 128, "optim.batch_size": 64, "optim.epochs": 2,
        "data.knn_bank": 128, "data.knn_queries": 64, "train.knn_every": 1, "train.online_linear": True,
        "train.checkpoint_every": 0,
    }  # fmt: skip
    study = Study("shapes", settings, get_study("shapes").arms[:1], "tiny monitored study (test)")
    monkeypatch.setitem(STUDIES, "tiny_monitored", study)
    run = fit(arm_config(study, study.arms[0], 0, tmp_path / "run", {"train.device": "cpu"}, None))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    collect("tiny_monitored", [run], tmp_path / "study")
    doc = json.loads((tmp_path / "study" / "simclr-s0" / "eval.json").read_text())
    got = {r["space"]: r["value"] for r in doc["results"]}
    assert got == {"knn_monitor": rows[-1]["knn_acc"], "online_linear": rows[-1]["online_linear_acc"]}
    assert json.loads((tmp_path / "study" / "study.json").read_text())["extra"] == {}
