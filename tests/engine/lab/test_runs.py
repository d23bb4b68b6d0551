"""engine.lab.runs on real files: run discovery under a root, tolerant metrics.jsonl reading, chart grouping,
and eval.json probe rows as engine.eval writes them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.eval.evaluate import write_results
from engine.lab.runs import (
    curve_groups,
    factor_probes,
    find_runs,
    is_writing,
    read_eval,
    read_metrics,
    x_axis,
)


def _run(root: Path, name: str, lines: list[str], mtime: float) -> Path:
    d = root / name
    d.mkdir(parents=True)
    f = d / "metrics.jsonl"
    f.write_text("".join(line + "\n" for line in lines))
    os.utime(f, (mtime, mtime))
    return d


def test_find_runs_newest_first_limited_and_never_through_links_out(tmp_path):
    root, outside = tmp_path / "runs", tmp_path / "outside"
    old = _run(root, "a/old", ['{"step": 1}'], 1_000)
    new = _run(root, "new", ['{"step": 1}'], 2_000)
    (root / "empty").mkdir()  # no metrics.jsonl: not a run
    real = _run(outside, "elsewhere", ['{"step": 1}'], 3_000)
    (root / "linked").symlink_to(real, target_is_directory=True)
    assert find_runs(root) == {"new": new, "a/old": old}
    assert list(find_runs(root, limit=1)) == ["new"]
    assert find_runs(tmp_path / "missing") == {}


def test_read_metrics_keeps_numbers_and_skips_a_half_written_line(tmp_path):
    lines = [
        json.dumps({"step": 10, "epoch": 0, "loss": 2.5, "lr": 0.1, "note": "warmup", "done": False}),
        "[1, 2]",  # valid JSON, not a record
        json.dumps({"step": 20, "epoch": 0, "loss": 2.0, "lr": 0.2, "knn_top1": 0.5}),
        '{"step": 30, "loss": 1.',  # a live run's last line, cut mid-write
    ]
    d = _run(tmp_path, "r", lines, 1_000)
    df = read_metrics(d / "metrics.jsonl")
    assert df["step"].tolist() == [10, 20]
    assert df["loss"].tolist() == [2.5, 2.0]
    assert sorted(df.columns) == ["epoch", "knn_top1", "loss", "lr", "step"]  # strings and booleans dropped
    assert x_axis(df) == "step" and x_axis(df.drop(columns="step")) == "epoch"
    assert x_axis(df[["loss"]]) is None
    (d / "metrics.jsonl").write_bytes(
        b'{"step": 1}\n\xff\xfe garbage\n'
    )  # non-UTF-8 bytes: skipped, no error
    assert read_metrics(d / "metrics.jsonl")["step"].tolist() == [1]


def test_curve_groups_put_each_column_in_one_chart_and_leave_axes_out():
    cols = ["step", "epoch", "time", "loss", "loss/rot", "lr", "lr/head", "knn_top1", "acc_rot", "grad_norm"]
    assert curve_groups(cols) == {
        "loss": ["loss", "loss/rot"],
        "lr": ["lr", "lr/head"],
        "knn / accuracy": ["knn_top1", "acc_rot"],
        "other": ["grad_norm"],
    }
    assert curve_groups(["step"]) == {}


def test_is_writing_compares_the_metrics_mtime_with_now(tmp_path):
    d = _run(tmp_path, "r", ['{"step": 1}'], 1_000)
    assert is_writing(d, now=1_060)
    assert not is_writing(d, now=1_200)
    assert not is_writing(tmp_path / "absent", now=1_000)


def test_read_eval_and_factor_probes_from_the_evaluators_own_file(tmp_path):
    rows = [
        {"evaluator": "factors", "space": "backbone", "metric": "r2_hue", "value": 0.25},
        {"evaluator": "factors", "space": "projector", "metric": "r2_hue", "value": 0.75},
        {"evaluator": "factors", "space": "backbone", "metric": "r2_scale", "value": 0.5},
        {"evaluator": "knn", "space": "backbone", "metric": "top1", "value": 0.9},
        # the factors evaluator's other rows: image colour (not a shapes factor) and a class accuracy beside chance
        {"evaluator": "factors", "space": "backbone", "metric": "r2_image_hue", "value": 0.125},
        {"evaluator": "factors", "space": "backbone", "metric": "colour_class_acc", "value": 0.8},
        {"evaluator": "factors", "space": "backbone", "metric": "colour_class_chance", "value": 0.2},
    ]
    write_results(rows, tmp_path, {"source": {"checkpoint": "x.safetensors"}})
    got = read_eval(tmp_path)
    assert got == rows
    assert factor_probes(got, "backbone") == [{"factor": "hue", "r2": 0.25}, {"factor": "scale", "r2": 0.5}]
    assert factor_probes(got, "equivariant") == []


@pytest.mark.parametrize("text", [None, "{not json", '["a list"]', '{"results": 3}'])
def test_read_eval_is_none_without_a_readable_file(tmp_path, text):
    if text is not None:
        (tmp_path / "eval.json").write_text(text)
    assert read_eval(tmp_path) is None
