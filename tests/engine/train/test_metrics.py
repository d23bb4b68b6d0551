"""engine.train.metrics: the metrics.jsonl reader and the check that reads a pretext head's loss against ln k."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from engine.augment.pretext import PRETEXT_TASKS, expand
from engine.study.report import chance_rows, load_results
from engine.train.loop import warn_at_chance
from engine.train.metrics import at_chance, chance_loss, epoch_key, head_losses, read_metrics

LN2, LN4 = math.log(2), math.log(4)


def steps(key: str, per_epoch: list[float], n: int = 3) -> pd.DataFrame:
    """Step records as the trainer logs them: ``n`` steps per epoch at the given loss, then the epoch record."""
    rows = []
    for e, v in enumerate(per_epoch, start=1):
        rows += [{"step": (e - 1) * n + i, "epoch": e, "loss": 5.0, key: v} for i in range(n)]
        rows.append({"epoch": e, "step": e * n, "loss_epoch": 5.0})
    return pd.DataFrame(rows)


def test_a_constant_head_scores_ln_k_on_balanced_labels_as_the_trainer_builds_them():
    """The baseline itself, on real torch: any constant output of a k-way head over the labels ``expand`` makes
    (each image under all k labels) has cross-entropy at least ln k, and exactly ln k when uniform."""
    x = torch.rand(6, 3, 16, 16)
    for task, spec in PRETEXT_TASKS.items():
        y = expand(x, task).labels
        k = spec.n_labels
        assert F.cross_entropy(torch.zeros(len(y), k), y).item() == pytest.approx(chance_loss(k), abs=1e-6), (
            task
        )
        other = torch.randn(k).expand(len(y), k)
        assert F.cross_entropy(other, y).item() >= chance_loss(k) - 1e-6, task


def test_head_losses_are_the_pretext_tasks_with_their_label_counts():
    cols = [
        "loss",
        "loss/inv",
        "loss/class",
        "loss/rotation",
        "loss/grayscale",
        "acc/grayscale",
        "loss/jigsaw",
    ]
    assert head_losses(cols) == {
        "loss/rotation": 4,
        "loss/grayscale": 2,
        "loss/jigsaw": PRETEXT_TASKS["jigsaw"].n_labels,
    }


def test_a_head_that_sits_at_ln_k_is_flagged_from_the_first_epoch_of_its_last_stretch():
    (f,) = at_chance(steps("loss/grayscale", [0.40, LN2 + 0.004, 0.50, LN2, LN2 - 0.002, LN2]))
    assert (f.key, f.k, f.since, f.last) == ("loss/grayscale", 2, 4, 6)
    assert f.loss == pytest.approx(LN2) and f.chance == pytest.approx(LN2)
    assert "ln 2 = 0.693 or above" in f.sentence() and "epoch 4 to epoch 6" in f.sentence()
    (r,) = at_chance(steps("loss/rotation", [1.2, LN4, LN4]))
    assert (r.k, r.since) == (4, 2)


@pytest.mark.parametrize(
    "key, per_epoch",
    [
        ("loss/grayscale", [LN2, LN2, 0.60]),  # it left chance: learning, however slowly
        ("loss/grayscale", [0.3, 0.3, LN2]),  # one epoch at chance is not a stretch
        (
            "loss/grayscale",
            [LN2 * 0.98, LN2 * 0.98, LN2 * 0.98],
        ),  # 2% below ln 2: better than a uniform guess
        ("loss/class", [LN2, LN2, LN2]),  # a class head: its labels need not be balanced
        ("loss/inv", [LN2, LN2, LN2]),
    ],
)
def test_heads_that_learn_or_are_not_pretext_heads_are_not_flagged(key, per_epoch):
    assert at_chance(steps(key, per_epoch)) == []


def test_a_head_worse_than_a_uniform_guess_is_flagged_too():
    (f,) = at_chance(steps("loss/grayscale", [0.3, LN2 * 1.3, LN2 * 1.05]))
    assert (f.since, f.last) == (2, 3)
    with pytest.raises(ValueError, match="at least 1"):
        at_chance(steps("loss/grayscale", [0.3]), epochs=0)


def test_the_epoch_records_mean_over_every_step_wins_over_the_logged_steps():
    """The trainer logs every log_every-th step; the epoch record's loss_epoch/<task> is the mean over all steps."""
    df = steps("loss/grayscale", [0.2, 0.2, 0.2])  # the logged steps look learned
    df.loc[df["loss_epoch"].notna(), "loss_epoch/grayscale"] = [0.3, LN2, LN2]  # every step says otherwise
    (f,) = at_chance(df)
    assert (f.since, f.last) == (2, 3) and epoch_key("loss/grayscale") == "loss_epoch/grayscale"
    df.loc[df["loss_epoch"].notna(), "loss_epoch/grayscale"] = [LN2, 0.3, 0.3]
    assert at_chance(df) == []


def test_no_epochs_no_flag():
    assert at_chance(pd.DataFrame()) == []
    assert at_chance(pd.DataFrame([{"step": 1, "loss/rotation": LN4}])) == []


def write_metrics(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in r.items() if pd.notna(v)} for r in frame.to_dict("records")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_trainer_warns_once_per_stretch(tmp_path, caplog):
    path = tmp_path / "run" / "metrics.jsonl"
    write_metrics(path, steps("loss/grayscale", [0.5, LN2, LN2]))
    warned: set = set()
    with caplog.at_level(logging.WARNING, logger="engine.train.loop"):
        warn_at_chance(tmp_path / "run", path, warned)
        warn_at_chance(tmp_path / "run", path, warned)
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "loss/grayscale has stayed at ln 2" in msg and "from epoch 2 to epoch 3" in msg
    assert len(read_metrics(path)) == 12  # 3 epochs of 3 steps and an epoch record


def test_the_report_counts_the_seeds_at_chance_from_each_runs_log(tmp_path):
    for seed, per_epoch in ((0, [0.5, LN2, LN2]), (1, [0.5, 0.4, 0.3])):
        run = tmp_path / f"essl-grayscale-s{seed}"
        write_metrics(run / "metrics.jsonl", steps("loss/grayscale", per_epoch))
        doc = {"arm": "essl-grayscale", "seed": seed, "results": []}
        (run / "eval.json").write_text(json.dumps(doc))
    docs = load_results(tmp_path)
    got = [[r for r in d["results"] if r["space"] == "training"] for d in docs]
    assert got == [
        [{"space": "training", "metric": "grayscale_at_chance", "value": 1.0}],
        [{"space": "training", "metric": "grayscale_at_chance", "value": 0.0}],
    ]
    assert chance_rows(steps("loss/inv", [LN2, LN2])) == []
    assert chance_rows(steps("loss/grayscale", [0.3])) == []  # one epoch cannot be judged: no row, not a 0
