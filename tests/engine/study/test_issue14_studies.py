"""One tiny arm of each issue-14 study end to end (train 1 step on tiny data, stores, every evaluator)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from engine.augment import get_recipe, light_recipe
from engine.augment.pretext import PRETEXT_TASKS, without_task
from engine.lab.pretext_choice import arm_name
from engine.lab.studies import Stat, noise_word
from engine.methods import build_method
from engine.study.registry import STUDIES, get_study, same_arms, select_arms
from engine.study.report import control_table, pairing_table, pretext_table, robustness_table
from engine.study.run import EvalSizes, run_arm

TINY = {"data.train_subset": 64, "optim.batch_size": 64, "optim.epochs": 1, "model.width": 0.0625,
        "data.knn_queries": 50, "train.log_every": 1}  # fmt: skip
SIZES = EvalSizes(probe_cap=100, n_fit=32, n_eval=32, n_sweep=4, store_limit=100)
ARMS = {
    "transforms": "pretext-jigsaw",
    "explaining_away": "rotation-eliminate",
    "clever_robustness": "clever-caug",
    "invariance_vs_equivariance": "inv-vflip",
    "rotation_backbones": "rotation-c4",
}


def test_every_issue14_study_has_its_cifar_variant():
    for name in (
        "transforms",
        "explaining_away",
        "clever_robustness",
        "invariance_vs_equivariance",
        "rotation_backbones",
    ):
        cifar, shapes = STUDIES[f"{name}_cifar10"], STUDIES[name]
        assert cifar.dataset == "cifar10" and [a.name for a in cifar.arms] == [a.name for a in shapes.arms]
        assert (
            cifar.probe_cap == 0 == STUDIES["cifar10_cpu"].probe_cap
        )  # the whole train split, comparable arms
    assert len(STUDIES["transforms"].arms) == 19 and len(STUDIES["invariance_vs_equivariance"].arms) == 17


@pytest.mark.parametrize("study", ["transforms", "invariance_vs_equivariance", "head_vs_lr"])
def test_every_task_its_base_recipe_hides_has_a_clean_twin(study):
    """An arm whose base views apply its own task at random before the label (methods.md §4.4) keeps its name and
    config (its runs stay valid and show the flaw) and has a `-clean` twin that differs only by task_free_base."""
    base = {"pretext": light_recipe(32), "essl": get_recipe("simclr")}
    arms = {a.name: a for a in STUDIES[study].arms}
    for arm in arms.values():
        task = arm.overrides.get("model.options.task") or arm.overrides.get("model.options.transform")
        if arm.name.endswith("-clean") or task is None:
            continue
        assert "model.options.task_free_base" not in arm.overrides
        hidden = without_task(base[arm.method], task) != base[arm.method]
        assert (
            hidden == (without_task(get_recipe("shapes"), task) != get_recipe("shapes"))
            or arm.method != "essl"
        )
        twin = arms.get(f"{arm.name}-clean")
        if study == "head_vs_lr" and arm.name != "eq-grayscale":
            continue
        assert (twin is not None) == hidden, arm.name
        if twin is not None:
            assert twin.overrides == {**arm.overrides, "model.options.task_free_base": True}


def test_head_vs_lr_arms_are_the_invariance_vs_equivariance_arms_plus_the_lr_control():
    """Its rows must be comparable with invariance_vs_equivariance's: the same settings and the same arm configs,
    plus SimCLR at E-SSL's doubled lr (the shapes study's control, unchanged)."""
    head, inv = STUDIES["head_vs_lr"], STUDIES["invariance_vs_equivariance"]
    assert (head.dataset, head.settings) == (inv.dataset, inv.settings)
    by_name = {a.name: a for a in inv.arms}
    extra = [a for a in head.arms if a.name not in by_name]
    assert [a.name for a in extra] == ["simclr-lr2"] and extra[0] in STUDIES["shapes"].arms
    assert extra[0].overrides == {"model.options.lr_scale": 2.0}
    assert all(a == by_name[a.name] for a in head.arms if a.name in by_name)
    assert {"simclr", "eq-rotation", "inv-grayscale", "eq-grayscale"} <= {a.name for a in head.arms}


@pytest.mark.parametrize("study", sorted(ARMS))
def test_one_tiny_arm_runs(study, tmp_path):
    st = get_study(study)
    (arm,) = select_arms(st, [ARMS[study]])
    doc = json.loads(run_arm(st, arm, 0, tmp_path, TINY, sizes=SIZES, device="cpu").read_text())
    metrics = {(r["space"], r["metric"]) for r in doc["results"]}
    assert ("backbone", "robust_acc/jitter+rot90") in metrics
    epochs = [json.loads(x) for x in (tmp_path / f"{arm.name}-s0" / "metrics.jsonl").read_text().splitlines()]
    if st.settings.get("train.online_linear"):
        assert "online_linear_acc" in epochs[-1] and ("online_linear", "acc") in metrics
    if study == "explaining_away":
        assert ("rotation_logits", "rotation_acc") in metrics and "acc/class" in epochs[0]
    if study == "transforms":  # a non-rotation head is scored beside chance and its shapes_upright ceiling
        assert {("pretext_logits", f"jigsaw_{m}") for m in ("acc", "chance", "ceiling")} <= metrics


def test_pretext_pairing_and_robustness_tables():
    agg = {
        "pretext-hflip": {("pretext_logits", "hflip_acc"): Stat(0.53, 0.01, 3),
                          ("pretext_logits", "hflip_chance"): Stat(0.5, 0, 3),
                          ("pretext_logits", "hflip_ceiling"): Stat(0.55, 0, 3),
                          ("training", "hflip_at_chance"): Stat(2 / 3, 0.577, 3),
                          ("online_linear", "acc"): Stat(0.4, 0.02, 3), ("backbone", "linear_acc"): Stat(0.5, 0.01, 3)},
        "essl-hflip": {("backbone", "linear_acc"): Stat(0.6, 0.01, 3)},
        "inv-hflip": {("backbone", "linear_acc"): Stat(0.60, 0.05, 3)},
        "eq-hflip": {("backbone", "linear_acc"): Stat(0.62, 0.05, 3)},
        "simclr": {("backbone", "robust_acc/clean"): Stat(0.7, 0, 1)},
    }  # fmt: skip
    arms = list(agg)
    pre = pretext_table(agg, arms)
    assert (
        "| pretext-hflip | 3 | hflip | 0.530 ± 0.010 | 0.500 | 0.550 | 2 of 3 | 0.400 ± 0.020 | 0.500 ± 0.010 | — |"
        in pre
    )
    assert "| simclr | 1 | — | — | — | — | — | — | — | — |" in pre
    pairs = pairing_table(agg, arms)
    inv_eq, pre_essl = pairs.split("\n\n")  # one table per pairing, its two ways named in the header
    assert inv_eq.startswith(
        "| transformation | as invariance (SimCLR + it) | as equivariance (E-SSL head) | second − first |"
    )
    assert "| hflip | 0.600 ± 0.050 | 0.620 ± 0.050 | +0.020 | noise |" in inv_eq
    assert pre_essl.startswith("| transformation | pretext alone | E-SSL head |")
    assert "| hflip | 0.500 ± 0.010 | 0.600 ± 0.010 | +0.100 | higher |" in pre_essl
    assert "| simclr | 0.700 | — |" in robustness_table(agg, arms)
    assert noise_word(Stat(0.5, 0, 1), Stat(0.9, 0, 3)) == "1 seed: spread unknown"
    # results.md's rule: beyond noise once the gap exceeds twice the LARGER std (0.07 > 0.06), even where twice
    # the std of the difference (2·√2·0.03 ≈ 0.085) would not call it
    assert noise_word(Stat(0.5, 0.03, 3), Stat(0.57, 0.03, 3)) == "higher"
    assert noise_word(Stat(0.5, 0.03, 3), Stat(0.44, 0.01, 3)) == "noise"
    assert noise_word(Stat(0.5, 0.03, 3), Stat(0.43, 0.01, 3)) == "lower"
    assert robustness_table({"a": {}}, ["a"]) == "" and pairing_table({"a": {}}, ["a"]) == ""


def test_a_clean_twin_pairs_with_the_plain_arm_only_where_that_arm_is_already_clean():
    """No inv-*-clean exists (an invariance arm has no head, nothing to mend), and the pretext arms' light recipe
    never grays, so eq-grayscale-clean and essl-grayscale-clean pair with the plain arms, marked; the light recipe
    mirrors, so essl-hflip-clean has no partner without pretext-hflip-clean."""
    lin = ("backbone", "linear_acc")
    agg = {
        name: {lin: Stat(v, 0.01, 3)}
        for name, v in (
            ("inv-grayscale", 0.9), ("eq-grayscale", 0.6), ("eq-grayscale-clean", 0.5),
            ("pretext-grayscale", 0.4), ("essl-grayscale-clean", 0.45),
            ("pretext-hflip", 0.3), ("essl-hflip", 0.35), ("essl-hflip-clean", 0.36),
        )
    }  # fmt: skip
    inv_eq, pre_essl = pairing_table(agg, list(agg)).split("\n\n| transformation")
    assert "| grayscale | 0.900 ± 0.010 | 0.600 ± 0.010 | -0.300 | lower |" in inv_eq
    assert "| grayscale-clean | 0.900 ± 0.010 ¹ | 0.500 ± 0.010 | -0.400 | lower |" in inv_eq
    assert "¹ inv-<transformation> itself: nothing to mend" in inv_eq
    assert "| grayscale-clean | 0.400 ± 0.010 ¹ | 0.450 ± 0.010 | +0.050 | higher |" in pre_essl
    assert "| hflip | 0.300 ± 0.010 | 0.350 ± 0.010 |" in pre_essl and "hflip-clean" not in pre_essl
    agg["pretext-hflip-clean"] = {lin: Stat(0.31, 0.01, 3)}
    assert "| hflip-clean | 0.310 ± 0.010 | 0.360 ± 0.010 |" in pairing_table(agg, list(agg))


def test_control_table_reads_each_arm_against_simclr_and_the_doubled_lr():
    lin = ("backbone", "linear_acc")
    agg = {
        "simclr": {lin: Stat(0.70, 0.01, 3)},
        "simclr-lr2": {lin: Stat(0.80, 0.01, 3)},
        "eq-rotation": {lin: Stat(0.81, 0.02, 3)},  # above SimCLR, level with the lr control: the lr's gain
        "eq-blur": {lin: Stat(0.90, 0.01, 3)},  # above both: the head's
        "none": {lin: Stat(0.2, 0.01, 3)},
    }
    table = control_table(agg, list(agg))
    assert (
        "| arm | linear_acc (backbone) | − simclr (0.700 ± 0.010) | vs simclr | − simclr-lr2 (0.800 ± 0.010) |"
        in table
    )
    assert "| eq-rotation | 0.810 ± 0.020 | +0.110 | higher | +0.010 | noise |" in table
    assert "| eq-blur | 0.900 ± 0.010 | +0.200 | higher | +0.100 | higher |" in table
    assert "| none |" not in table and "| simclr |" not in table
    assert control_table({k: v for k, v in agg.items() if k != "simclr-lr2"}, ["simclr", "eq-blur"]) == ""


def test_same_arms_matches_arms_by_method_and_options_not_by_name():
    tasks = ("hflip", "vflip", "invert", "grayscale", "rotation", "blur", "jigsaw")
    assert same_arms("invariance_vs_equivariance", "transforms") == {
        "simclr": "simclr", **{f"eq-{t}": f"essl-{t}" for t in tasks},
        **{f"eq-{t}-clean": f"essl-{t}-clean" for t in ("hflip", "grayscale")},  # the twins match too
    }  # fmt: skip
    assert same_arms("explaining_away", "transforms") == {}  # no arm in common
    assert same_arms("gone", "transforms") == same_arms("transforms", "gone") == {}  # not a study


def test_the_about_tables_name_the_clean_twins_the_registry_declares():
    """engine.lab.pretext_choice finds a task's `-clean` arm by rule (:func:`arm_name`); the rule and the studies'
    arm lists must agree, or a measured twin would never reach the About page."""
    declared = {a.name for study in ("transforms", "invariance_vs_equivariance") for a in STUDIES[study].arms}
    by_rule = {arm_name(prefix, t, clean=True) for prefix in ("pretext", "essl", "eq") for t in PRETEXT_TASKS}
    assert {a for a in declared if a.endswith("-clean")} == {a for a in by_rule if a.endswith("-clean")}


def test_grayscale_conflict_differs_from_head_vs_lr_only_by_the_gray_in_the_views():
    """Its two carried arms are head_vs_lr's (so `--merge` carries their runs), and each new arm is one of them with
    the shapes recipe less its random grayscale, nothing else."""
    conflict, head = STUDIES["grayscale_conflict"], STUDIES["head_vs_lr"]
    assert (conflict.dataset, conflict.settings) == (head.dataset, head.settings)
    by_name = {a.name: a for a in head.arms}
    arms = {a.name: a for a in conflict.arms}
    assert (
        arms["simclr-lr2"] == by_name["simclr-lr2"]
        and arms["eq-grayscale-clean"] == by_name["eq-grayscale-clean"]
    )
    assert get_recipe("shapes_nogray") == replace(get_recipe("shapes"), gray_p=0.0)
    nogray = {"model.options.recipe": "shapes_nogray"}
    assert arms["simclr-lr2-nogray"].overrides == {**by_name["simclr-lr2"].overrides, **nogray}
    clean = {
        k: v
        for k, v in by_name["eq-grayscale-clean"].overrides.items()
        if k != "model.options.task_free_base"
    }
    assert arms["eq-grayscale-nogray"].overrides == {
        **clean,
        **nogray,
    }  # nothing gray left for the option to remove


def test_grayscale_head_lr_differs_from_transforms_cifar10_only_by_the_lr():
    """Its carried arms are transforms_cifar10's own (so `--merge` carries their runs); each new arm is one of them
    at SimCLR's lr (lr_scale 1 against E-SSL's 2), nothing else."""
    lr, transforms = STUDIES["grayscale_head_lr_cifar10"], STUDIES["transforms_cifar10"]
    assert (lr.dataset, lr.settings, lr.probe_cap) == (
        transforms.dataset,
        transforms.settings,
        transforms.probe_cap,
    )
    assert same_arms("transforms_cifar10", "grayscale_head_lr_cifar10") == {
        "essl-grayscale": "essl-grayscale",
        "essl-grayscale-clean": "essl-grayscale-clean",
    }
    arms = {a.name: a for a in lr.arms}
    for name in ("essl-grayscale", "essl-grayscale-clean"):
        assert arms[f"{name}-lr1"].overrides == {**arms[name].overrides, "model.options.lr_scale": 1.0}
    assert build_method("essl", options={"transform": "grayscale"}).config.lr_scale == 2.0
