"""The study's code path end to end on a tiny subset (so `study run` / `study report` cannot rot), and the report's
aggregation against a hand computation."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.augment import get_recipe
from engine.core.errors import ConfigError
from engine.study.registry import STUDIES, Study, get_study, select_arms
from engine.study.report import (
    FAILED,
    Stat,
    aggregate,
    failed_arms,
    family_table,
    load_results,
    summary_stats,
    summary_table,
    write_report,
)
from engine.study.run import EvalSizes, arm_config, run_arm, run_study, same_run
from engine.train.config import peak_lr

TINY = {"data.train_subset": 128, "optim.batch_size": 64, "optim.epochs": 1, "model.width": 0.0625}
SIZES = EvalSizes(probe_cap=200, n_fit=64, n_eval=64, n_sweep=8, store_limit=200)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    paths = run_study("shapes", [0, 1], out, ["essl", "none"], TINY, sizes=SIZES, device="cpu")
    return out, paths


def test_run_writes_one_eval_per_seed_and_arm(tiny_study):
    out, paths = tiny_study
    assert sorted(p.parent.name for p in paths) == sorted(
        f"{a}-s{s}" for a in ("essl", "none") for s in (0, 1)
    )
    doc = json.loads((out / "essl-s1" / "eval.json").read_text())
    assert (doc["arm"], doc["method"], doc["seed"]) == ("essl", "essl", 1)
    metrics = {(r["space"], r["metric"]) for r in doc["results"]}
    assert {("backbone", "knn_acc"), ("backbone", "r2_hue"), ("rotation_logits", "rotation_acc")} <= metrics
    # on/off families keep both strengths in the sweeps (flip at 0 and 1)
    assert ("backbone", "sweep/flip@1/invariance/relative") in metrics
    # the untrained reference is measured with the shapes recipe, like the trained arms (recorded)
    none = json.loads((out / "none-s0" / "eval.json").read_text())
    assert none["protocol"]["recipe"] == "shapes" and doc["protocol"]["recipe"] == "shapes"
    study = json.loads((out / "study.json").read_text())
    # every declared arm in its order (a run of some arms does not reorder the report), the seeds run so far
    assert study["arms"] == [a.name for a in STUDIES["shapes"].arms] and study["extra"]["optim.epochs"] == 1
    assert study["seeds"] == [0, 1]


def test_rerun_skips_finished_runs(tiny_study):
    out, paths = tiny_study
    before = {p: p.stat().st_mtime_ns for p in paths}
    again = run_study("shapes", [0, 1], out, ["essl", "none"], TINY, sizes=SIZES, device="cpu")
    assert {p: p.stat().st_mtime_ns for p in again} == before


def test_a_finished_run_with_the_same_config_is_reused_not_retrained(tiny_study, tmp_path):
    out, _ = tiny_study
    again = run_study("shapes", [0], tmp_path, ["essl"], TINY, sizes=SIZES, device="cpu", reuse=[out])
    doc, src = json.loads(again[0].read_text()), json.loads((out / "essl-s0" / "eval.json").read_text())
    assert doc.pop("reused_from") == str(out / "essl-s0") and doc == src
    assert not (tmp_path / "essl-s0" / "checkpoints").exists()  # nothing trained
    study, arm = get_study("shapes"), select_arms(get_study("shapes"), ["essl"])[0]
    extra = {"train.device": "cpu", **TINY}
    assert same_run(study, arm, 0, extra, None, [out]) == out / "essl-s0"
    assert same_run(study, arm, 0, {**extra, "optim.epochs": 2}, None, [out]) is None  # another config
    assert same_run(study, arm, 1, extra, None, [out]) == out / "essl-s1"  # each seed its own run
    other = select_arms(study, ["none"])[0]
    assert same_run(study, other, 0, extra, None, [out]) == out / "none-s0"
    assert same_run(study, arm, 0, extra, None, [tmp_path / "missing"]) is None


DIVERGES = {**TINY, "optim.epochs": 2, "optim.warmup_epochs": 0.0, "optim.lr": 100.0,
            "model.options.lr_scale": 1000.0}  # fmt: skip  # rotation − class CE at this step: NaN by step 3


def test_a_diverging_arm_is_recorded_skipped_on_rerun_and_reported(tiny_study, tmp_path):
    out, _ = tiny_study
    study_dir = tmp_path / "study"
    shutil.copytree(out, study_dir)  # finished arms beside the one that will diverge
    got = run_study(
        "explaining_away", [0], study_dir, ["rotation-eliminate"], DIVERGES, sizes=SIZES, device="cpu"
    )
    failed = study_dir / "rotation-eliminate-s0" / FAILED
    assert got == [] and failed.is_file()  # no exception: the study goes on, the reason is kept
    doc = json.loads(failed.read_text())
    assert (doc["arm"], doc["seed"]) == ("rotation-eliminate", 0) and "non-finite loss" in doc["reason"]
    stamp = failed.stat().st_mtime_ns
    assert run_study("explaining_away", [0], study_dir, ["rotation-eliminate"], DIVERGES, sizes=SIZES) == []
    assert failed.stat().st_mtime_ns == stamp  # skipped, not trained again
    assert failed_arms(study_dir) == [doc]
    write_report(study_dir, tmp_path / "report")
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert (
        "### not evaluated: training diverged" in tables
        and "| rotation-eliminate | 0 | non-finite loss" in tables
    )
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["failed"] == [doc]


def test_aggregate_matches_hand_computation(tiny_study):
    out, _ = tiny_study
    docs = load_results(out)
    knn = {
        d["seed"]: next(
            r["value"] for r in d["results"] if (r["space"], r["metric"]) == ("backbone", "knn_acc")
        )
        for d in docs
        if d["arm"] == "essl"
    }
    assert set(knn) == {0, 1}
    st = aggregate(docs)["essl"][("backbone", "knn_acc")]
    assert st.n == 2
    assert st.mean == pytest.approx((knn[0] + knn[1]) / 2)
    assert st.std == pytest.approx(abs(knn[0] - knn[1]) / math.sqrt(2))  # sample std of two values


def test_report_files(tiny_study, tmp_path):
    out, _ = tiny_study
    paths = write_report(out, tmp_path / "report")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        ["tables.md", "summary.json", "factor_probes.png", "sweep_invariance.png", "sweep_prediction.png",
         "pretext.png"]  # the E-SSL arm has a rotation head: pretext.png
    )  # fmt: skip
    for p in paths:
        if p.suffix == ".png":
            with Image.open(p) as im:
                assert im.format == "PNG" and im.width > 600 and im.height > 300
    md = (tmp_path / "report" / "tables.md").read_text()
    assert md.index("| essl |") < md.index("| none |")  # the study's arm order
    assert "| essl | 2 | rotation |" in md and "| none | 2 | — |" in md  # the pretext table: a head or a dash
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["arms"] == ["essl", "none"]


def test_summary_stats_reads_back_what_the_report_aggregated(tiny_study, tmp_path):
    out, _ = tiny_study
    write_report(out, tmp_path / "report")
    back = summary_stats(json.loads((tmp_path / "report" / "summary.json").read_text()))
    agg = aggregate(load_results(out))
    assert set(back) == set(agg) == {"essl", "none"}
    for arm, stats in agg.items():
        for key, st in stats.items():
            got = back[arm][key]  # the scored-space "disp" rows too: recomputed from the spaces read back
            assert got.n == st.n and (got.mean == st.mean or (math.isnan(got.mean) and math.isnan(st.mean)))
            assert got.std == st.std


def test_a_report_merges_an_earlier_summary_for_the_arms_it_did_not_rerun(tiny_study, tmp_path):
    out, _ = tiny_study
    write_report(out, tmp_path / "full")
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert full["study"] == "shapes" and full["dataset"] == "shapes" and full["extra"]["optim.epochs"] == 1
    part = tmp_path / "part"  # the study dir after a run of one arm (`study run ... --arms essl`)
    shutil.copytree(out, part, ignore=shutil.ignore_patterns("none-s*"))
    write_report(part, tmp_path / "merged", merge=tmp_path / "full" / "summary.json")
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert merged["arms"] == ["essl", "none"] and merged["seeds"] == [0, 1]  # the declared order, both arms
    assert merged["carried"] == {"from": str(tmp_path / "full" / "summary.json"), "arms": ["none"]}
    none = lambda s: json.dumps(s["metrics"]["none"], sort_keys=True)  # noqa: E731
    assert none(merged) == none(full)  # carried as written, to the last digit
    md = (tmp_path / "merged" / "tables.md").read_text()
    assert (
        "| none | 2 |" in md
        and "carried over from an earlier report, " in md
        and "same seeds [0, 1]): none" in md
    )
    # an arm re-run here is taken from here, not from the summary
    write_report(out, tmp_path / "again", merge=tmp_path / "merged" / "summary.json")
    assert "carried" not in json.loads((tmp_path / "again" / "summary.json").read_text())


def test_a_report_carries_another_studys_arms_of_the_same_definition_under_its_own_names(
    tiny_study, tmp_path
):
    """transforms' essl-rotation is invariance_vs_equivariance's eq-rotation (same method and options): a report of
    transforms merging that study's summary takes its results under transforms' name and says where they came
    from; its arms that transforms does not declare (inv-*) are left out, failure records included."""
    out, _ = tiny_study
    write_report(out, tmp_path / "full")
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    other = {
        **full, "study": "invariance_vs_equivariance",
        "metrics": {"eq-rotation": full["metrics"]["essl"], "inv-blur": full["metrics"]["essl"]},
        "failed": [{"arm": "eq-blur", "seed": 1, "reason": "nan"}, {"arm": "inv-blur", "seed": 0, "reason": "nan"}],
    }  # fmt: skip
    (tmp_path / "other.json").write_text(json.dumps(other))
    part = tmp_path / "part"  # transforms after `study run transforms --arms none`
    shutil.copytree(out, part, ignore=shutil.ignore_patterns("essl-s*"))
    record = json.loads((part / "study.json").read_text())
    (part / "study.json").write_text(
        json.dumps({**record, "study": "transforms", "arms": [a.name for a in STUDIES["transforms"].arms]})
    )
    write_report(part, tmp_path / "merged", merge=tmp_path / "other.json")
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert merged["arms"] == ["essl-rotation", "none"]  # transforms' order; inv-blur is not a transforms arm
    assert merged["carried"] == {
        "from": str(tmp_path / "other.json"), "arms": ["essl-rotation"], "was": {"essl-rotation": "eq-rotation"}
    }  # fmt: skip
    rows = lambda m: json.dumps(m, sort_keys=True)  # noqa: E731
    assert rows(merged["metrics"]["essl-rotation"]) == rows(full["metrics"]["essl"])  # to the last digit
    assert merged["failed"] == [{"arm": "essl-blur", "seed": 1, "reason": "nan"}]
    md = (tmp_path / "merged" / "tables.md").read_text()
    assert "same seeds [0, 1]): essl-rotation (eq-rotation there)" in md and "| essl-blur | 1 | nan |" in md


@pytest.mark.parametrize(
    "edit, why",
    [
        (lambda s: {**s, "seeds": [0, 1, 2]}, "seeds [0, 1, 2] differ"),
        (
            lambda s: {**s, "study": "gone"},
            "its study 'gone' differs from this study's 'shapes' and declares none",
        ),
        (lambda s: {**s, "extra": {**s["extra"], "optim.epochs": 20}}, "its extra"),
        (lambda s: {"arms": []}, "no metrics"),
        (lambda s: {**s, "metrics": {"x": {"backbone/knn_acc": {"mean": 0.5}}}}, "not a mean/std/n record"),
        (None, "not a readable summary.json"),
    ],
)
def test_merge_refuses_a_summary_of_other_seeds_settings_or_no_summary(tiny_study, tmp_path, edit, why):
    out, _ = tiny_study
    write_report(out, tmp_path / "full")
    path = tmp_path / "full" / "summary.json"
    if edit is None:
        path.write_text("{ not json")
    else:
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(ConfigError, match=re.escape(f"--merge {path}: ") + ".*" + re.escape(why)):
        write_report(out, tmp_path / "merged", merge=path)
    assert not (tmp_path / "merged").exists()  # nothing written


def test_tables_format_mean_and_std():
    agg = {
        "a": {
            ("backbone", "knn_acc"): Stat(0.5, 0.1, 3),
            ("backbone", "sweep/hue@0.5/invariance"): Stat(0.8, 0, 3),
        },
        "b": {("backbone", "knn_acc"): Stat(0.25, 0.0, 1)},
    }
    table = summary_table(agg, ["a", "b"])
    assert "| a | 3 | 0.500 ± 0.100 |" in table
    assert "| b | 1 | 0.250 |" in table  # a single seed shows no spread
    fam = family_table(agg, ["a", "b"], "backbone", "invariance")  # an old file's raw-cosine rows still read
    assert fam.splitlines()[0] == "| arm | hue |" and "| a | 0.800 |" in fam and "| b | — |" in fam


def test_family_table_marks_non_encoded_families_and_counts_each_op_once():
    k = "disp/method/cos"
    agg = {
        "a": {
            ("disp", f"sweep/rotation@0/{k}"): Stat(1.0, 0, 1),  # identity: left out
            ("disp", f"sweep/rotation@360/{k}"): Stat(1.0, 0, 1),  # the same identity again: left out
            ("disp", f"sweep/rotation@90/{k}"): Stat(0.2, 0, 1),
            ("disp", f"sweep/hue@0.25/{k}"): Stat(0.6, 0, 1),
            ("disp", f"sweep/blur@1/{k}"): Stat(float("nan"), 0, 0),  # undefined
            ("disp", f"sweep/disp/{k}"): Stat(0.5, 0, 1),  # overall row: not a family
        }
    }
    fam = family_table(agg, ["a"], "disp", k)
    assert fam.splitlines()[0] == "| arm | hue | blur (not encoded) | rotation (not encoded) |"
    assert "| a | 0.600 | n/a | 0.200 |" in fam
    inv = family_table(
        {"a": {("backbone", "sweep/blur@1/invariance/relative"): Stat(0.5, 0, 1)}},
        ["a"],
        "backbone",
        "invariance/relative",
    )
    assert inv.splitlines()[0] == "| arm | blur |"  # invariance needs no parameter vector: no mark


def test_arms_share_settings_and_essl_doubles_lr(tmp_path):
    study = get_study("shapes")
    cfgs = {a.name: arm_config(study, a, 3, tmp_path / a.name, {}, None) for a in study.arms}
    shared = {
        (c.model.width, c.optim.batch_size, c.optim.epochs, c.data.train_subset, c.train.seed)
        for c in cfgs.values()
    }
    assert shared == {(0.125, 128, 10, 5000, 3)}
    assert peak_lr(cfgs["essl"]) == pytest.approx(2 * peak_lr(cfgs["essl-lr1"]))
    assert peak_lr(cfgs["essl-lr1"]) == pytest.approx(peak_lr(cfgs["simclr"]))
    assert cfgs["simclr"].model.options["recipe"] == "shapes"


def test_colour_full_jitters_hue_over_the_whole_circle_on_the_palette_dataset(tmp_path):
    study = get_study("colour_full")
    cfgs = {a.name: arm_config(study, a, 0, tmp_path / a.name, {}, None) for a in study.arms}
    assert {c.data.dataset for c in cfgs.values()} == {"shapes_colour"}
    assert set(cfgs) == {
        a.name for a in get_study("colour").arms
    }  # the same arms as the CIFAR-strength design
    for name in ("simclr", "essl", "equimod", "clever"):
        assert cfgs[name].model.options["recipe"] == "shapes"
        assert get_recipe(cfgs[name].model.options["recipe"]).hue == 0.5  # the whole hue circle
    colour = {
        a.name: arm_config(get_study("colour"), a, 0, tmp_path / f"c-{a.name}", {}, None)
        for a in get_study("colour").arms
    }
    assert (
        colour["simclr"].model.options["recipe"] == "shapes_colour"
    )  # CIFAR strength: the design it answers
    assert peak_lr(cfgs["essl"]) == pytest.approx(2 * peak_lr(cfgs["simclr"]))


def test_cifar10_cpu_has_the_doubled_lr_simclr_control(tmp_path):
    study = get_study("cifar10_cpu")
    cfgs = {a.name: arm_config(study, a, 0, tmp_path / a.name, {}, None) for a in study.arms}
    assert peak_lr(cfgs["simclr-lr2"]) == pytest.approx(2 * peak_lr(cfgs["simclr"]))
    assert peak_lr(cfgs["simclr-lr2"]) == pytest.approx(peak_lr(cfgs["essl"]))
    assert cfgs["simclr-lr2"].model.method == "simclr"


def test_a_study_can_probe_the_whole_train_split(tmp_path):
    base = get_study("shapes")
    none = next(a for a in base.arms if a.name == "none")
    sizes = EvalSizes(probe_cap=50, n_fit=64, n_eval=64, n_sweep=8, store_limit=200)
    probes = {}
    for cap in (None, 0):
        study = Study(base.dataset, {**base.settings, **TINY}, (none,), "probe cap", probe_cap=cap)
        doc = json.loads(run_arm(study, none, 0, tmp_path / str(cap), sizes=sizes, device="cpu").read_text())
        probes[cap] = doc["protocol"]["probe"]
    assert probes[None].endswith("of 50 train items")  # the evaluation's cap (here the test's)
    assert probes[0].endswith("of 200 train items")  # the study's: every item of the (limited) train split
    assert get_study("cifar10_cpu").probe_cap == 0  # the CIFAR-10 study probes all 50,000 train images


def test_bad_study_arguments():
    with pytest.raises(ConfigError, match="unknown study 'nope'"):
        get_study("nope")
    with pytest.raises(ConfigError, match=r"no arm\(s\) \['byol'\]"):
        select_arms(STUDIES["shapes"], ["byol"])
    with pytest.raises(ConfigError, match="--seeds"):
        run_study("shapes", [], Path("unused"))
    with pytest.raises(ConfigError, match="no study results"):
        load_results(Path(np.__file__).parent)
