"""The studies: each a registry entry of one dataset, the settings every arm shares and its arms (a method plus
the few options that make it that arm). ``engine.study.run`` trains and evaluates them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.augment.pretext import hidden_by_base
from engine.core.errors import ConfigError
from engine.train.config import build_config


@dataclass(frozen=True)
class Arm:
    """One row of a study: a method and the overrides that distinguish it from the shared settings, or (with
    ``checkpoint``, a sidecar path) an existing model that is only evaluated."""

    name: str
    method: str
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    checkpoint: str = ""


@dataclass(frozen=True)
class Study:
    dataset: str
    settings: dict[str, Any]  # shared by every arm (dotted config keys)
    arms: tuple[Arm, ...]
    description: str
    probe_cap: int | None = (
        None  # train items for the probes (0 = the whole split); None = the evaluation's default
    )


_SHAPES_SETTINGS = {  # the dataset defaults (width 0.125, 5k subset, batch 128, lr 0.5), 10 epochs, no monitor
    "optim.epochs": 10,
    "optim.warmup_epochs": 1.0,
    "train.knn_every": 0,
    "train.checkpoint_every": 0,
}
_ESSL_SAME_LR = {"model.options.lr_scale": 1.0}
SIMCLR_LR2 = Arm(
    "simclr-lr2", "simclr", {"model.options.lr_scale": 2.0}, note="control: SimCLR at E-SSL's doubled lr"
)
SHAPES_ARMS = (
    Arm("simclr", "simclr"),
    SIMCLR_LR2,
    Arm("essl", "essl", note="E-SSL's reference recipe: doubled lr (lr_scale 2)"),
    Arm("essl-lr1", "essl", _ESSL_SAME_LR, note="E-SSL at the shared lr"),
    Arm("equimod", "equimod"),
    Arm("clever", "clever"),
    Arm("rotation", "rotation", note="rotation prediction only (RotNet-style reference)"),
    Arm("none", "none", note="random initialisation (untrained reference)"),
)

# ------------------------------------------------------------------------- issue 14: the seed papers' experiments
_TASKS = (
    "hflip",
    "vflip",
    "invert",
    "grayscale",
    "rotation",
    "blur",
    "jigsaw",
)  # engine.augment.pretext order
_MONITORED = {
    **_SHAPES_SETTINGS,
    "train.online_linear": True,
}  # Understanding-ESSL's online linear classifier


def _copies(task: str) -> dict[str, Any]:
    """The 24 jigsaws are drawn one per image (24 copies of every image would dominate the study's time)."""
    return {"model.options.copies": "sampled"} if task == "jigsaw" else {}


# The tasks whose label the arms' base views apply at random before it (docs/methods.md §4.4): the light recipe
# mirrors (pretext); SimCLR's and shapes' recipes mirror and gray (E-SSL's head view). Each such arm has a `-clean`
# twin whose base view never applies its task (``task_free_base``); the flawed arm stays, as the measured flaw.
_CLEAN = {"model.options.task_free_base": True}


def _with_clean(arm: Arm, task: str, kind: str) -> tuple[Arm, ...]:
    """``arm``, then its `-clean` twin when the base recipe of ``kind`` applies ``task`` at random."""
    if not hidden_by_base(kind, task):
        return (arm,)
    note = f"{arm.note}; the base view never applies {task} before the label"
    return arm, Arm(f"{arm.name}-clean", arm.method, {**arm.overrides, **_CLEAN}, note=note)


TRANSFORM_ARMS = (
    *(
        a
        for t in _TASKS
        for a in _with_clean(
            Arm(
                f"pretext-{t}",
                "pretext",
                {"model.options.task": t, **_copies(t)},
                note=f"{t} prediction alone",
            ),
            t,
            "pretext",
        )
    ),
    *(
        a
        for t in _TASKS
        for a in _with_clean(
            Arm(
                f"essl-{t}",
                "essl",
                {"model.options.transform": t},
                note=f"SimCLR + E-SSL head predicting {t}",
            ),
            t,
            "essl",
        )
    ),
    Arm("simclr", "simclr"),
    Arm("none", "none", note="random initialisation (floor)"),
)
EXPLAINING_AWAY_ARMS = tuple(
    Arm(f"rotation-{term}", "pretext", {"model.options.task": "rotation", "model.options.class_term": term},
        note=what)
    for term, what in (
        ("none", "rotation prediction alone"),
        ("add", "rotation + class cross-entropy (λ = 1)"),
        ("eliminate", "rotation − class cross-entropy of a separately trained classifier (λ = 1)"),
        ("confuse", "rotation + λ·KL(uniform ‖ that classifier's output): the bounded form of eliminate"),
    )
)  # fmt: skip
BACKBONE_ARMS = (
    Arm("rotation-resnet18", "rotation", {"model.backbone": "resnet18_cifar"}, note="plain ResNet-18"),
    Arm(
        "rotation-c4", "rotation", {"model.backbone": "resnet18_c4_cifar_regular"},
        note="C4-equivariant ResNet-18 (regular pooling: rotation stays readable)",
    ),
    Arm(
        "rotation-d4", "rotation", {"model.backbone": "resnet18_d4_cifar_regular"},
        note="D4-equivariant ResNet-18 (quarter turns and mirrors; regular pooling)",
    ),
    Arm("none", "none"),
)  # fmt: skip


def _robustness_arms(base: str) -> tuple[Arm, ...]:
    """SimCLR and CLeVER with the dataset's base recipe (BAug) and with CAug (+ rotation in [-90°, 90°])."""
    return tuple(
        Arm(f"{m}-{aug}", m, {"model.options.recipe": recipe}, note=f"{m} with {aug.upper()}")
        for m in ("simclr", "clever")
        for aug, recipe in (("baug", base), ("caug", f"{base}_caug"))
    )


INV_VS_EQ_ARMS = (
    Arm("simclr", "simclr", note="baseline: the recipe alone"),
    *(
        Arm(f"inv-{t}", "simclr", {"model.options.invariance": t}, note=f"{t} added as an invariance")
        for t in _TASKS
    ),
    *(
        a
        for t in _TASKS
        for a in _with_clean(
            Arm(f"eq-{t}", "essl", {"model.options.transform": t}, note=f"{t} predicted (E-SSL head)"),
            t,
            "essl",
        )
    ),
)

# The invariance_vs_equivariance arms whose one-seed reading hung on E-SSL's doubled lr (rotation, vertical flip,
# blur, jigsaw scored higher predicted than SimCLR) or was the study's one reversal (grayscale), beside SimCLR at the
# doubled lr: is the gain the head's or the lr's?
HEAD_VS_LR_ARMS = (
    INV_VS_EQ_ARMS[0],
    SIMCLR_LR2,
    *(a for a in INV_VS_EQ_ARMS if a.name in ("eq-rotation", "eq-vflip", "eq-blur", "eq-jigsaw")),
    *(a for a in INV_VS_EQ_ARMS if a.name in ("inv-grayscale", "eq-grayscale", "eq-grayscale-clean")),
)

_CIFAR_CPU = {
    "model.width": 0.125,
    "data.train_subset": 10_000,
    "data.knn_bank": 5000,
    "data.knn_queries": 1000,
    "optim.batch_size": 256,
    "optim.epochs": 10,
    "optim.warmup_epochs": 1.0,
    "optim.lr": 0.5,
    "train.knn_every": 0,
    "train.checkpoint_every": 0,
}
_CIFAR_MONITORED = {**_CIFAR_CPU, "train.online_linear": True}

COLOUR_ARMS = (
    Arm("simclr", "simclr"),
    Arm("essl", "essl", note="E-SSL's reference recipe: doubled lr (lr_scale 2)"),
    Arm("equimod", "equimod"),
    Arm("clever", "clever"),
    Arm("none", "none", note="random initialisation (floor)"),
)

# The colour question posed so it can be answered: the same palette dataset with hue jittered over the whole circle
# (the `shapes` recipe). No colour survives two views, so colour cannot tell instances apart and shape must be
# learned; invariance must erase colour, while a method that predicts the hue shift (EquiMod's parameter vector)
# is rewarded for keeping it. The colour class stays a downstream task that needs it.
COLOUR_FULL_ARMS = tuple(
    Arm(a.name, a.method, {**a.overrides, **({"model.options.recipe": "shapes"} if a.method != "none" else {})},
        note=a.note)
    for a in COLOUR_ARMS
)  # fmt: skip

# Why does predicting grayscale hurt (head_vs_lr)? Not the random gray before the head's label (eq-grayscale-clean
# is no better). What remains is the invariance views' own random gray: one loss asks the backbone to ignore gray,
# the other to read it. Here neither SimCLR view is ever gray, beside SimCLR at the same doubled lr and recipe.
_NO_GRAY = {"model.options.recipe": "shapes_nogray"}
GRAYSCALE_CONFLICT_ARMS = (
    SIMCLR_LR2,
    next(a for a in INV_VS_EQ_ARMS if a.name == "eq-grayscale-clean"),
    Arm("simclr-lr2-nogray", "simclr", {**SIMCLR_LR2.overrides, **_NO_GRAY},
        note="SimCLR at the doubled lr, views never gray"),
    Arm("eq-grayscale-nogray", "essl", {"model.options.transform": "grayscale", **_NO_GRAY},
        note="grayscale predicted (E-SSL head), no view ever gray before a label"),
)  # fmt: skip

# E-SSL's grayscale head on CIFAR-10 went back to ln 2 (a uniform guess's loss) in 3 of its 4 transforms_cifar10
# runs, with and without the clean base, at E-SSL's doubled lr (peak 1.0 at CPU scale). The same two arms at
# SimCLR's lr (lr_scale 1, peak 0.5), beside them (carried with `--merge`): is the collapse the lr's?
_GRAY_HEAD = ("essl-grayscale", "essl-grayscale-clean")
GRAYSCALE_HEAD_LR_ARMS = (
    *(a for a in TRANSFORM_ARMS if a.name in _GRAY_HEAD),
    *(
        Arm(f"{a.name}-lr1", a.method, {**a.overrides, "model.options.lr_scale": 1.0},
            note=f"{a.note}; at SimCLR's lr (lr_scale 1)")
        for a in TRANSFORM_ARMS
        if a.name in _GRAY_HEAD
    ),
)  # fmt: skip

# The CIFAR-10 variants probe on the whole 50,000-image train split, as cifar10_cpu does, so their arms compare.
ISSUE14_STUDIES: dict[str, Study] = {
    "transforms": Study(
        "shapes_upright", _MONITORED, TRANSFORM_ARMS,
        "Understanding-ESSL's seven pretext tasks, each alone and as E-SSL's head, + SimCLR and none "
        "(shapes_upright; online linear classifier on)",
    ),
    "transforms_cifar10": Study(
        "cifar10", _CIFAR_MONITORED, TRANSFORM_ARMS, "the transforms study on CIFAR-10 at CPU scale", probe_cap=0
    ),
    "explaining_away": Study(
        "shapes_upright", _MONITORED, EXPLAINING_AWAY_ARMS,
        "rotation prediction alone vs + / − λ·class cross-entropy (Understanding-ESSL verification, λ = 1)",
    ),
    "explaining_away_cifar10": Study(
        "cifar10", _CIFAR_MONITORED, EXPLAINING_AWAY_ARMS, "the explaining-away study on CIFAR-10 at CPU scale",
        probe_cap=0,
    ),
    "rotation_backbones": Study(
        "shapes_upright", _MONITORED, BACKBONE_ARMS,
        "rotation prediction with a plain vs a C4- and a D4-equivariant ResNet-18 (Understanding-ESSL part 3)",
    ),
    "rotation_backbones_cifar10": Study(
        "cifar10", _CIFAR_MONITORED, BACKBONE_ARMS, "the model-equivariance study on CIFAR-10 at CPU scale",
        probe_cap=0,
    ),
    "clever_robustness": Study(
        "shapes", _SHAPES_SETTINGS, _robustness_arms("shapes"),
        "SimCLR vs CLeVER, BAug vs CAug; the robustness evaluator scores test-time jitter and rotation",
    ),
    "clever_robustness_cifar10": Study(
        "cifar10", _CIFAR_CPU, _robustness_arms("simclr"), "the CLeVER robustness study on CIFAR-10", probe_cap=0
    ),
    "invariance_vs_equivariance": Study(
        "shapes_upright", _MONITORED, INV_VS_EQ_ARMS,
        "E-SSL's question per transformation: added to SimCLR's augmentations vs predicted by E-SSL's head",
    ),
    "head_vs_lr": Study(
        "shapes_upright", _MONITORED, HEAD_VS_LR_ARMS,
        "E-SSL's head or its doubled lr? invariance_vs_equivariance's eq-* arms that beat SimCLR, and grayscale, "
        "beside SimCLR at the doubled lr (simclr-lr2)",
    ),
    "grayscale_conflict": Study(
        "shapes_upright", _MONITORED, GRAYSCALE_CONFLICT_ARMS,
        "does predicting grayscale hurt because SimCLR's views are gray at random? E-SSL's grayscale head and SimCLR "
        "at its doubled lr, with and without grayscale in the views",
    ),
    "grayscale_head_lr_cifar10": Study(
        "cifar10", _CIFAR_MONITORED, GRAYSCALE_HEAD_LR_ARMS,
        "does E-SSL's grayscale head collapse on CIFAR-10 because of its doubled lr? the head at SimCLR's lr "
        "(lr_scale 1) beside transforms_cifar10's arms at the doubled lr", probe_cap=0,
    ),
    "invariance_vs_equivariance_cifar10": Study(
        "cifar10", _CIFAR_MONITORED, INV_VS_EQ_ARMS, "invariance vs equivariance on CIFAR-10 at CPU scale",
        probe_cap=0,
    ),
}  # fmt: skip

# The papers' CIFAR-10 setting (methods.md §1.4): the dataset defaults are width 1, batch 512, SGD lr 0.03 x bs/256;
# the monitors run on the whole splits (E-SSL's kNN monitor: 50,000-image bank, 10,000 test queries).
_PAPER_CIFAR = {
    "model.width": 1.0,
    "optim.batch_size": 512,
    "data.train_subset": 0,
    "data.knn_bank": 50000,
    "data.knn_queries": 10000,
    "train.online_linear": True,
    "train.checkpoint_every": 0,
}

STUDIES: dict[str, Study] = {
    "shapes": Study(
        "shapes",
        _SHAPES_SETTINGS,
        SHAPES_ARMS,
        "all methods on shapes (uniform angles): ResNet-18 width 0.125, 5,000 images, batch 128, 10 epochs",
    ),
    "shapes_upright": Study(
        "shapes_upright",
        _SHAPES_SETTINGS,
        tuple(a for a in SHAPES_ARMS if a.name in ("essl", "rotation", "none")),
        "the rotation question: the same settings on shapes with a canonical orientation",
    ),
    "cifar10_cpu": Study(
        "cifar10",
        _CIFAR_CPU,
        tuple(a for a in SHAPES_ARMS if a.name != "essl-lr1"),
        "CPU baseline on real CIFAR-10: ResNet-18 width 0.125, 10,000 images, batch 256, 10 epochs; "
        "simclr-lr2 is the control for E-SSL's doubled lr; kNN and probes use all 50,000 train images",
        probe_cap=0,
    ),
    "paper_cifar10": Study(
        "cifar10",
        _PAPER_CIFAR,
        tuple(a for a in SHAPES_ARMS if a.name in ("simclr", "essl", "equimod")),
        "paper scale on a GPU: ResNet-18 width 1, the whole 50,000-image train split, batch 512, SGD with cosine "
        "decay, E-SSL's kNN monitor on the full splits and the online linear classifier; epochs as the session "
        "allows (--set optim.epochs=N; docs/gpu/session.sh, then `study collect`)",
        probe_cap=0,
    ),
    **ISSUE14_STUDIES,
    "colour": Study(
        "shapes_colour",
        _SHAPES_SETTINGS,
        COLOUR_ARMS,
        "the colour question: does equivariance keep the colour invariance throws away? shapes with 4 palette "
        "colours (no colour pair identifies an image) and CIFAR-strength hue jitter; colour-class probe",
    ),
    "colour_full": Study(
        "shapes_colour",
        _SHAPES_SETTINGS,
        COLOUR_FULL_ARMS,
        "the colour question posed so it can be answered: shapes_colour with hue jittered over the whole circle "
        "(no colour survives two views, so shape must be learned); does predicting the jitter keep the colour?",
    ),
}


def get_study(name: str) -> Study:
    try:
        return STUDIES[name]
    except KeyError:
        raise ConfigError(f"unknown study {name!r}; choose from {sorted(STUDIES)}") from None


def select_arms(study: Study, names: list[str] | None) -> tuple[Arm, ...]:
    """The arms named (all when ``names`` is empty); ConfigError for a name the study does not have."""
    if not names:
        return study.arms
    known = {a.name: a for a in study.arms}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(f"study has no arm(s) {unknown}; choose from {list(known)}")
    return tuple(known[n] for n in names)


def same_arms(source: str, target: str) -> dict[str, str]:
    """Study ``source``'s arm names → the name of study ``target``'s arm with the same method and options (empty
    when either is not a study here). On the same dataset, shared settings and seed two such arms are one run, so a
    report of ``target`` may carry ``source``'s results for them (e.g. invariance_vs_equivariance's ``eq-rotation``
    is transforms' ``essl-rotation``)."""
    if source not in STUDIES or target not in STUDIES:
        return {}
    out = {}
    for a in STUDIES[source].arms:
        match = next(
            (b for b in STUDIES[target].arms if (b.method, b.overrides) == (a.method, a.overrides)), None
        )
        if match is not None:
            out[a.name] = match.name
    return out


def arm_config(study: Study, arm: Arm, seed: int, run_dir: Path, extra: dict[str, Any], root: str | None):
    """The validated training config of one (arm, seed): shared settings < arm overrides < ``extra``."""

    flat = {
        **study.settings,
        "model.method": arm.method,
        "data.dataset": study.dataset,
        "data.root": root,
        "train.seed": seed,
        "train.out": str(run_dir),
        **arm.overrides,
        **extra,
    }
    return build_config(flat)


def study_record(
    name: str,
    study: Study,
    out: Path,
    seeds: list[int],
    chosen: tuple[Arm, ...],
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    """study.json: the study's declared arms (all of them, in their order, whatever ``--arms`` ran now, so a report
    keeps the declared order), plus any checkpoint arms and the seeds of this and earlier runs into ``out``."""
    old = json.loads((out / "study.json").read_text()) if (out / "study.json").is_file() else {}
    declared = [a.name for a in study.arms]
    extra_arms = [a for a in [*old.get("arms", []), *(a.name for a in chosen)] if a not in declared]
    checkpoints = {**old.get("checkpoints", {}), **{a.name: a.checkpoint for a in chosen if a.checkpoint}}
    return {
        "study": name, "description": study.description, "dataset": study.dataset,
        "seeds": sorted({*old.get("seeds", []), *seeds}), "arms": declared + list(dict.fromkeys(extra_arms)),
        "settings": study.settings, "extra": extra or {}, "checkpoints": checkpoints,
    }  # fmt: skip
