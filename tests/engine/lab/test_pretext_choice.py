"""The About page's transformation table: chance and ceilings per task, study cells from summary documents."""

from __future__ import annotations

import json

import pytest

from engine.lab.pretext_choice import (
    backbones,
    explaining_away,
    real_task_baselines,
    real_task_table,
    task_baselines,
    task_table,
)
from engine.lab.studies import fmt, measured_columns, read_summary, stat, tidy


def _summary(metrics: dict) -> dict:
    return {"arms": list(metrics), "seeds": [0, 1, 2], "metrics": metrics}


def test_every_task_has_chance_and_both_ceilings():
    t = task_table().set_index("task")
    assert list(t.index) == ["hflip", "vflip", "invert", "grayscale", "rotation", "blur", "jigsaw"]
    assert t.loc["rotation", "chance"] == 0.25 and t.loc["jigsaw", "labels"] == 24
    assert t.loc["rotation", "ceiling shapes"] == pytest.approx(
        0.25, abs=1e-3
    )  # uniform angles: not identifiable
    assert t.loc["rotation", "ceiling shapes_upright"] == pytest.approx(0.632, abs=1e-3)
    assert (t["pretext acc (alone)"] == "—").all()  # no study given: blank, never a made-up number


def test_study_cells_come_from_the_summaries():
    transforms = _summary(
        {
            "pretext-rotation": {"rotation_logits/rotation_acc": {"mean": 0.5, "std": 0.02, "n": 3}},
            "essl-hflip": {"pretext_logits/hflip_acc": {"mean": 0.53, "std": 0.0, "n": 1}},
        }
    )
    inv = _summary({"inv-blur": {"backbone/linear_acc": {"mean": float("nan"), "std": 0, "n": 0}}})
    t = task_table(transforms, inv).set_index("task")
    assert t.loc["rotation", "pretext acc (alone)"] == "0.500 ± 0.020"
    assert t.loc["hflip", "pretext acc (E-SSL head)"] == "0.530"
    assert t.loc["blur", "linear, as invariance"] == "—"  # NaN is not a measurement
    assert fmt(None) == "—" and stat(None, "a", "b") is None


def test_the_head_is_read_against_simclr_at_its_doubled_lr():
    m = {"backbone/linear_acc": {"mean": 0.90, "std": 0.01, "n": 3}}
    head = _summary(
        {
            "simclr": {"backbone/linear_acc": {"mean": 0.80, "std": 0.02, "n": 3}},
            "simclr-lr2": {"backbone/linear_acc": {"mean": 0.88, "std": 0.02, "n": 3}},
            "eq-rotation": m,  # +0.02 over the control, within 2 × 0.02: the lr's gain, not the head's
            "eq-blur": {"backbone/linear_acc": {"mean": 0.95, "std": 0.01, "n": 3}},  # +0.07: beyond
        }
    )
    inv = {
        "arms": ["simclr"],
        "seeds": [0],
        "metrics": {"simclr": {"backbone/linear_acc": {"mean": 0.795, "std": 0, "n": 1}}},
    }
    t = task_table(None, inv, head).set_index("task")
    col = "E-SSL head − SimCLR at its lr"
    assert t.loc["rotation", col] == "+0.020 (noise)" and t.loc["blur", col] == "+0.070 (higher)"
    assert t.loc["jigsaw", col] == "—"  # not in the study: blank, never a guess
    assert task_baselines(inv, head) == (
        "Baselines, backbone linear probe: SimCLR alone 0.795 (invariance_vs_equivariance, seeds [0]); "
        "SimCLR alone 0.800 ± 0.020 (head_vs_lr, seeds [0, 1, 2]); "
        "SimCLR at E-SSL's doubled lr 0.880 ± 0.020 (head_vs_lr, seeds [0, 1, 2])."
    )
    assert task_baselines(None, None) == "" and (task_table()[col] == "—").all()


def test_explaining_away_rows_and_unreadable_files(tmp_path):
    ea = _summary(
        {
            "rotation-none": {"rotation_logits/rotation_acc": {"mean": 0.44, "std": 0, "n": 1},
                              "online_linear/acc": {"mean": 0.27, "std": 0, "n": 1}},
            "rotation-add": {"rotation_logits/rotation_acc": {"mean": 0.6, "std": 0, "n": 1}},
        }
    )  # fmt: skip
    rows = explaining_away(ea)
    assert list(rows["arm"]) == ["rotation alone", "+ class cross-entropy"]
    assert list(rows["online linear (class)"]) == ["0.270", "—"]
    bad = tmp_path / "summary.json"
    bad.write_text("{not json")
    assert read_summary(bad) is None and read_summary(tmp_path / "missing.json") is None
    bad.write_text(json.dumps([1, 2]))
    assert read_summary(bad) is None


def test_backbone_rows_follow_the_study_and_skip_unmeasured_arms():
    doc = _summary(
        {
            "rotation-c4": {"backbone/linear_acc": {"mean": 0.7, "std": 0.01, "n": 3},
                            "rotation_logits/rotation_acc": {"mean": 0.55, "std": 0.02, "n": 3}},
            "rotation-resnet18": {"backbone/linear_acc": {"mean": 0.6, "std": 0, "n": 1}},
            "rotation-d4": {"rotation_logits/rotation_acc": {"mean": 0.5, "std": 0, "n": 1}},  # no linear: skipped
        }
    )  # fmt: skip
    rows = backbones(doc)
    assert list(rows["backbone"]) == [
        "ResNet-18",
        "C4-equivariant ResNet-18",
    ]  # plain first, whatever the file
    assert list(rows["rotation acc"]) == ["—", "0.550 ± 0.020"] and list(rows["seeds"]) == [1, 3]


def test_chance_and_ceiling_are_task_properties_shown_without_a_spread():
    doc = _summary(
        {"rotation-none": {"rotation_logits/rotation_acc": {"mean": 0.356, "std": 0.089, "n": 3},
                           "rotation_logits/rotation_chance": {"mean": 0.25, "std": 0.0, "n": 3},
                           "rotation_logits/rotation_ceiling": {"mean": 0.632, "std": 0.0, "n": 3}}}
    )  # fmt: skip
    row = explaining_away(doc).iloc[0]
    assert (row["rotation acc"], row["chance"], row["ceiling"]) == ("0.356 ± 0.089", "0.250", "0.632")
    assert backbones(None).empty


def test_tidy_keeps_arm_order_and_leaves_out_what_was_not_measured():
    summary = _summary(
        {
            "b": {"backbone/knn_acc": {"mean": 0.5, "std": 0.1, "n": 3}},
            "a": {"backbone/knn_acc": {"mean": 0.7, "std": 0.0, "n": 3},
                  "backbone/r2_hue": {"mean": float("nan"), "std": 0, "n": 0}},
        }
    )  # fmt: skip
    t = tidy(summary, {"kNN": "backbone/knn_acc", "R² hue": "backbone/r2_hue"})
    assert list(zip(t["arm"], t["measure"], t["mean"])) == [("b", "kNN", 0.5), ("a", "kNN", 0.7)]
    assert tidy(None, {"kNN": "backbone/knn_acc"}).empty


def test_columns_measured_in_no_row_are_dropped_and_partly_measured_ones_kept():
    """A real dataset has no identifiability ceiling: its explaining-away rows carry "—" there, and the column
    goes; a column blank in one row only (an arm that did not measure it) stays."""
    doc = _summary(
        {
            "rotation-none": {"rotation_logits/rotation_acc": {"mean": 0.64, "std": 0.01, "n": 3},
                              "rotation_logits/rotation_chance": {"mean": 0.25, "std": 0, "n": 3}},
            "rotation-confuse": {"rotation_logits/rotation_acc": {"mean": 0.65, "std": 0.01, "n": 3},
                                 "rotation_logits/rotation_chance": {"mean": 0.25, "std": 0, "n": 3},
                                 "online_linear/acc": {"mean": 0.19, "std": 0.001, "n": 3}},
        }
    )  # fmt: skip
    rows = explaining_away(doc)
    assert (rows["ceiling"] == "—").all()
    kept = measured_columns(rows)
    assert "ceiling" not in kept.columns and list(kept["online linear (class)"]) == ["—", "0.190 ± 0.001"]
    assert list(kept.columns) == [c for c in rows.columns if c != "ceiling"]  # order kept


def test_an_invariance_is_read_against_simclr_alone_at_the_same_lr():
    inv = _summary(
        {
            "simclr": {"backbone/linear_acc": {"mean": 0.83, "std": 0.03, "n": 3}},
            "inv-invert": {
                "backbone/linear_acc": {"mean": 0.42, "std": 0.05, "n": 3}
            },  # −0.41: beyond 2 × 0.05
            "inv-grayscale": {
                "backbone/linear_acc": {"mean": 0.91, "std": 0.07, "n": 3}
            },  # +0.08 ≤ 0.14: noise
        }
    )
    col = task_table(None, inv).set_index("task")["as invariance − SimCLR"]
    assert col["invert"] == "-0.410 (lower)" and col["grayscale"] == "+0.080 (noise)"
    assert col["rotation"] == "—"  # the arm is not in the summary: blank
    one_seed = {"arms": ["simclr", "inv-blur"], "seeds": [0], "metrics": {
        "simclr": {"backbone/linear_acc": {"mean": 0.795, "std": 0, "n": 1}},
        "inv-blur": {"backbone/linear_acc": {"mean": 0.803, "std": 0, "n": 1}},
    }}  # fmt: skip
    assert task_table(None, one_seed).set_index("task").loc["blur", "as invariance − SimCLR"] == (
        "+0.008 (1 seed: spread unknown)"
    )


def test_real_task_table_reads_heads_against_both_simclr_controls():
    """CIFAR-10's transforms study: no ceiling column; each head against SimCLR in the same study and against
    SimCLR at the doubled lr from the control study; a task nothing measured has no row."""
    lin = "backbone/linear_acc"
    transforms = _summary(
        {
            "none": {lin: {"mean": 0.30, "std": 0.004, "n": 2}},
            "simclr": {lin: {"mean": 0.46, "std": 0.010, "n": 2}},
            "pretext-rotation": {lin: {"mean": 0.40, "std": 0.01, "n": 2},
                                 "rotation_logits/rotation_acc": {"mean": 0.64, "std": 0.01, "n": 2}},
            # +0.04 over SimCLR (beyond 2 × 0.010), +0.005 over the lr control (within 2 × 0.005)
            "essl-rotation": {lin: {"mean": 0.50, "std": 0.005, "n": 2}},
            "essl-blur": {lin: {"mean": 0.40, "std": 0.005, "n": 1}},  # one seed: no verdict
        }
    )  # fmt: skip
    transforms["study"] = "transforms_cifar10"
    control = {"study": "cifar10_cpu", "seeds": [0, 1, 2],
               "metrics": {"simclr-lr2": {lin: {"mean": 0.495, "std": 0.005, "n": 3}}}}  # fmt: skip
    t = real_task_table(transforms, control).set_index("task")
    assert list(t.index) == ["rotation", "blur"] and "ceiling" not in " ".join(t.columns)
    assert t.loc["rotation", "chance"] == 0.25
    assert t.loc["rotation", "pretext acc (alone)"] == "0.640 ± 0.010"
    assert t.loc["rotation", "E-SSL head − SimCLR"] == "+0.040 (higher)"
    assert t.loc["rotation", "E-SSL head − SimCLR at its lr"] == "+0.005 (noise)"
    assert t.loc["blur", "E-SSL head − SimCLR"] == "-0.060 (1 seed: spread unknown)"
    assert t.loc["rotation", "linear (alone)"] == "0.400 ± 0.010" and t.loc["blur", "linear (alone)"] == "—"
    assert real_task_table(transforms, None).loc[0, "E-SSL head − SimCLR at its lr"] == "—"
    assert real_task_table(None).empty
    assert real_task_baselines(transforms, control) == (
        "Baselines, backbone linear probe: untrained network 0.300 ± 0.004 (transforms_cifar10, seeds [0, 1, 2]); "
        "SimCLR 0.460 ± 0.010 (transforms_cifar10, seeds [0, 1, 2]); "
        "SimCLR at E-SSL's doubled lr 0.495 ± 0.005 (cifar10_cpu, seeds [0, 1, 2])."
    )
    assert real_task_baselines(None, None) == ""


def test_a_task_whose_base_view_hid_it_gets_a_clean_row_reading_its_twins():
    """methods.md §4.4: the hflip arms' base views mirror at random (their label is hidden), E-SSL's gray. A
    `-clean` twin measured anywhere adds a row "<task>, clean base" that reads the twins, and for a column whose
    arm never hid the task (the grayscale task alone: the light recipe never grays) the arm itself."""
    lin, hacc, gacc = "backbone/linear_acc", "pretext_logits/hflip_acc", "pretext_logits/grayscale_acc"
    transforms = _summary(
        {
            "simclr": {lin: {"mean": 0.46, "std": 0.010, "n": 2}},
            "pretext-hflip": {lin: {"mean": 0.30, "std": 0.002, "n": 2}, hacc: {"mean": 0.50, "std": 0.0, "n": 2}},
            "pretext-hflip-clean": {lin: {"mean": 0.36, "std": 0.004, "n": 2},
                                    hacc: {"mean": 0.81, "std": 0.01, "n": 2}},
            "pretext-grayscale": {lin: {"mean": 0.27, "std": 0.01, "n": 2}},
            "essl-grayscale": {lin: {"mean": 0.42, "std": 0.01, "n": 2}, gacc: {"mean": 0.77, "std": 0.3, "n": 2}},
            "essl-grayscale-clean": {lin: {"mean": 0.45, "std": 0.01, "n": 2},
                                     gacc: {"mean": 0.99, "std": 0.0, "n": 2}},
        }
    )  # fmt: skip
    t = real_task_table(transforms).set_index("task")
    assert list(t.index) == ["hflip", "hflip, clean base", "grayscale", "grayscale, clean base"]
    assert t.loc["hflip", "pretext acc (alone)"] == "0.500 ± 0.000"
    assert t.loc["hflip, clean base", "pretext acc (alone)"] == "0.810 ± 0.010"
    assert t.loc["hflip, clean base", "linear (E-SSL head)"] == "—"  # essl-hflip-clean not measured
    assert t.loc["grayscale, clean base", "linear (alone)"] == "0.270 ± 0.010"  # never hidden: the same arm
    assert t.loc["grayscale, clean base", "pretext acc (E-SSL head)"] == "0.990 ± 0.000"
    assert t.loc["grayscale, clean base", "E-SSL head − SimCLR"] == "-0.010 (noise)"

    inv = _summary({"eq-hflip-clean": {lin: {"mean": 0.9, "std": 0.01, "n": 3}},
                    "inv-hflip": {lin: {"mean": 0.8, "std": 0.01, "n": 3}}})  # fmt: skip
    head = _summary({"simclr-lr2": {lin: {"mean": 0.88, "std": 0.02, "n": 3}},
                     "eq-grayscale-clean": {lin: {"mean": 0.70, "std": 0.02, "n": 3}}})  # fmt: skip
    shapes = task_table(None, inv, head).set_index("task")
    assert [r for r in shapes.index if "clean" in r] == ["hflip, clean base", "grayscale, clean base"]
    assert shapes.loc["hflip, clean base", "linear, as equivariance"] == "0.900 ± 0.010"
    # an invariance has no label to hide: the clean row points at the task's own row, never a blank "not measured"
    assert shapes.loc["hflip", "linear, as invariance"] == "0.800 ± 0.010"
    assert shapes.loc["hflip, clean base", "linear, as invariance"] == "as above"
    assert (
        shapes.loc["grayscale, clean base", "linear, as invariance"] == "—"
    )  # nor one where nothing is measured
    assert (
        shapes.loc["hflip, clean base", "ceiling shapes_upright"]
        == shapes.loc["hflip", "ceiling shapes_upright"]
    )
    assert shapes.loc["grayscale, clean base", "E-SSL head − SimCLR at its lr"] == "-0.180 (lower)"
    assert "clean" not in " ".join(task_table().task)  # no twin measured: no row
