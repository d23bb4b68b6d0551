"""The About page's "Which transformation should an equivariant task predict?": one row per pretext task of
Understanding-ESSL (engine.augment.pretext), and a second where a `-clean` twin was measured (:func:`task_rows`),
with its chance level and its identifiability ceilings on ``shapes`` and ``shapes_upright``
(engine.data.ceilings), joined with what the studies measured when their summaries exist
(``python -m engine study report ... --out docs/study-<name>``: the ``transforms``, ``invariance_vs_equivariance``
and ``head_vs_lr`` studies). Pure functions of the summary documents; missing studies give blank cells.
"""

from __future__ import annotations

import pandas as pd

from engine.augment.pretext import PRETEXT_TASKS, hidden_by_base
from engine.data.ceilings import ceilings
from engine.lab.studies import CONTROLS, fmt, noise_word, stat
from engine.methods.protocol import logits_key

# Understanding-ESSL's three principles for choosing the task (methods.md §4.1), each with what it asks of a task.
PRINCIPLES: tuple[tuple[str, str], ...] = (
    (
        "Lossy transformations",
        "the transformation should destroy information the class does not need, so the task cannot be solved by "
        "undoing it from low-level traces alone.",
    ),
    (
        "Class relevance",
        "predicting the transformation should be easier once the class is known (the explaining-away effect): "
        "rotation needs to know which way is up, and that depends on what the object is.",
    ),
    (
        "Shortcut pruning",
        "cues that give the label away without the object (borders, blur statistics, colour histograms) should be "
        "removed, e.g. by cropping and jittering the transformed view as E-SSL does.",
    ),
)


LINEAR = "backbone/linear_acc"
LR_CONTROL = CONTROLS[1]  # SimCLR at E-SSL's doubled lr: the baseline an E-SSL head's gain is read against


def delta_cell(summary: dict | None, arm: str, control: str, control_summary: dict | None = None) -> str:
    """``arm``'s linear accuracy minus ``control``'s (in the same study, or in ``control_summary``): "+0.012
    (noise)", "+0.080 (higher)", "−0.101 (1 seed: spread unknown)", "—" when either arm is not measured
    (:func:`noise_word`'s rule)."""
    a = stat(summary, arm, LINEAR)
    ctrl = stat(summary if control_summary is None else control_summary, control, LINEAR)
    if a is None or ctrl is None:
        return "—"
    return f"{a.mean - ctrl.mean:+.3f} ({noise_word(ctrl, a)})"


def head_vs_lr_cell(head_vs_lr: dict | None, task: str, clean: bool = False) -> str:
    """E-SSL's head predicting ``task`` against SimCLR at the same doubled lr, linear probe (the ``head_vs_lr``
    study): the part of the ``eq-*`` arm's gain that is the head's, not the learning rate's."""
    return delta_cell(head_vs_lr, arm_name("eq", task, clean), LR_CONTROL)


CLEAN_ROW = "{task}, clean base"


def arm_name(prefix: str, task: str, clean: bool = False) -> str:
    """The study arm of ``task`` with ``prefix`` (``pretext``, ``essl`` or ``eq``); with ``clean``, the arm whose base
    view never applies the task: its `-clean` twin where the base recipe hides the task, else the arm itself."""
    kind = "pretext" if prefix == "pretext" else "essl"
    return f"{prefix}-{task}-clean" if clean and hidden_by_base(kind, task) else f"{prefix}-{task}"


def task_rows(*summaries: dict | None) -> list[tuple[str, str, bool]]:
    """(task, row label, clean) per task in :data:`PRETEXT_TASKS` order; a task whose `-clean` arms any of
    ``summaries`` measured gets a second row, labelled :data:`CLEAN_ROW`, that reads those arms."""
    rows = []
    for task in PRETEXT_TASKS:
        rows.append((task, task, False))
        twins = {arm_name(p, task, True) for p in ("pretext", "essl", "eq")} - {
            arm_name(p, task) for p in ("pretext", "essl", "eq")
        }
        if any(stat(doc, arm, LINEAR) is not None for doc in summaries for arm in twins):
            rows.append((task, CLEAN_ROW.format(task=task), True))
    return rows


def task_baselines(inv_vs_eq: dict | None, head_vs_lr: dict | None) -> str:
    """The linear-probe levels the table's columns are read against, each with the study and seeds it comes
    from; "" when neither study is reported."""
    return _baselines(
        ("SimCLR alone", "invariance_vs_equivariance", inv_vs_eq, CONTROLS[0]),
        ("SimCLR alone", "head_vs_lr", head_vs_lr, CONTROLS[0]),
        ("SimCLR at E-SSL's doubled lr", "head_vs_lr", head_vs_lr, LR_CONTROL),
    )


def _baselines(*entries: tuple[str, str, dict | None, str]) -> str:
    """ "Baselines, backbone linear probe: <label> <mean ± std> (<study>, seeds [...]); ..." for each (label,
    study, summary, arm) whose arm is measured; "" when none is."""
    parts = [
        f"{label} {fmt(s)} ({study}, seeds {(doc or {}).get('seeds', [])})"
        for label, study, doc, arm in entries
        if (s := stat(doc, arm, LINEAR)) is not None
    ]
    return "Baselines, backbone linear probe: " + "; ".join(parts) + "." if parts else ""


def _invariance_cells(inv_vs_eq: dict | None, task: str, clean: bool) -> dict[str, str]:
    """The task added as an invariance (SimCLR + it) and that against SimCLR alone; a clean row says "as above"
    where the task's first row has them: an invariance has no label for a base view to hide."""
    cells = {
        "linear, as invariance": fmt(stat(inv_vs_eq, f"inv-{task}", LINEAR)),
        "as invariance − SimCLR": delta_cell(inv_vs_eq, f"inv-{task}", CONTROLS[0]),
    }
    return {k: ("as above" if v != "—" else v) for k, v in cells.items()} if clean else cells


def task_table(
    transforms: dict | None = None, inv_vs_eq: dict | None = None, head_vs_lr: dict | None = None
) -> pd.DataFrame:
    """One row per pretext task (two where a `-clean` twin was measured, :func:`task_rows`): labels, chance,
    ceilings, and (when the studies exist) the pretext accuracy of the task alone and as E-SSL's head, the
    backbone's linear accuracy with the task as an invariance (SimCLR + it, and that against SimCLR alone at the
    same lr) and as an equivariance (E-SSL head), and that head against SimCLR at its doubled lr
    (:func:`head_vs_lr_cell`)."""
    ceil = {o: ceilings(o) for o in ("uniform", "upright")}
    rows = []
    for task, label, clean in task_rows(transforms, inv_vs_eq, head_vs_lr):
        spec, acc = PRETEXT_TASKS[task], f"{logits_key(task)}/{task}_acc"
        alone, head, eq = (arm_name(p, task, clean) for p in ("pretext", "essl", "eq"))
        rows.append(
            {
                "task": label,
                "labels": spec.n_labels,
                "chance": round(1.0 / spec.n_labels, 3),
                "ceiling shapes": round(ceil["uniform"][task], 3),
                "ceiling shapes_upright": round(ceil["upright"][task], 3),
                "pretext acc (alone)": fmt(stat(transforms, alone, acc)),
                "pretext acc (E-SSL head)": fmt(stat(transforms, head, acc)),
                **_invariance_cells(inv_vs_eq, task, clean),
                "linear, as equivariance": fmt(stat(inv_vs_eq, eq, LINEAR)),
                "E-SSL head − SimCLR at its lr": head_vs_lr_cell(head_vs_lr, task, clean),
            }
        )
    return pd.DataFrame(rows)


def real_task_table(transforms: dict | None, lr_control: dict | None = None) -> pd.DataFrame:
    """The ``transforms`` study on a real dataset (``transforms_cifar10``), one row per pretext task (two where a
    `-clean` twin was measured): its chance (real images have no computable ceiling), the task's accuracy and the
    backbone's linear accuracy with the task alone and as E-SSL's head, and the head against SimCLR in the same
    study and against SimCLR at E-SSL's doubled lr (``simclr-lr2`` of ``lr_control``, a study with the same
    settings and seeds, e.g. ``cifar10_cpu``). A task the study has not measured has no row; no study, no rows."""
    rows = []
    for task, label, clean in task_rows(transforms):
        spec, acc = PRETEXT_TASKS[task], f"{logits_key(task)}/{task}_acc"
        alone, head = arm_name("pretext", task, clean), arm_name("essl", task, clean)
        rows.append(
            {
                "task": label,
                "chance": round(1.0 / spec.n_labels, 3),
                "pretext acc (alone)": fmt(stat(transforms, alone, acc)),
                "linear (alone)": fmt(stat(transforms, alone, LINEAR)),
                "pretext acc (E-SSL head)": fmt(stat(transforms, head, acc)),
                "linear (E-SSL head)": fmt(stat(transforms, head, LINEAR)),
                "E-SSL head − SimCLR": delta_cell(transforms, head, CONTROLS[0]),
                "E-SSL head − SimCLR at its lr": delta_cell(transforms, head, LR_CONTROL, lr_control or {}),
            }
        )
    measured = [r for r in rows if any(r[c] != "—" for c in ("linear (alone)", "linear (E-SSL head)"))]
    return pd.DataFrame(measured)


def real_task_baselines(transforms: dict | None, lr_control: dict | None) -> str:
    """The linear-probe levels :func:`real_task_table` is read against, each with its study and seeds."""
    name, control = (transforms or {}).get("study", "?"), (lr_control or {}).get("study", "?")
    return _baselines(
        ("untrained network", name, transforms, "none"),
        ("SimCLR", name, transforms, CONTROLS[0]),
        ("SimCLR at E-SSL's doubled lr", control, lr_control, LR_CONTROL),
    )


ROTATION = {  # column -> "space/metric" of a rotation-predicting arm
    "rotation acc": "rotation_logits/rotation_acc",
    "chance": "rotation_logits/rotation_chance",
    "ceiling": "rotation_logits/rotation_ceiling",
}
TASK_PROPERTIES = {
    "chance",
    "ceiling",
}  # columns fixed by the task, the same for every seed: shown without a spread


def arm_rows(
    summary: dict | None, arms: dict[str, str], first: str, columns: dict[str, str], needs: str
) -> pd.DataFrame:
    """One row per arm of ``arms`` (arm -> its name, in this order) that has ``needs`` measured: its name under
    ``first``, each of ``columns`` (label -> "space/metric") formatted, and its number of seeds."""
    rows = [
        {
            first: name,
            **{
                label: fmt(stat(summary, arm, key), spread=label not in TASK_PROPERTIES)
                for label, key in columns.items()
            },
            "seeds": measured[2],
        }
        for arm, name in arms.items()
        if (measured := stat(summary, arm, needs)) is not None
    ]
    return pd.DataFrame(rows)


def explaining_away(summary: dict | None) -> pd.DataFrame:
    """Rotation accuracy and the online classifier's accuracy for rotation alone, + and − the class term, and the
    bounded form of − (confuse)."""
    arms = {
        "rotation-none": "rotation alone",
        "rotation-add": "+ class cross-entropy",
        "rotation-eliminate": "− class CE",
        "rotation-confuse": "+ KL(uniform ‖ classifier): class made unreadable, bounded",
    }
    columns = {**ROTATION, "online linear (class)": "online_linear/acc"}
    return arm_rows(summary, arms, "arm", columns, ROTATION["rotation acc"])


def backbones(summary: dict | None) -> pd.DataFrame:
    """Rotation prediction with each backbone of the ``rotation_backbones`` study: the rotation head's accuracy
    beside chance and the ceiling, and what the backbone knows of the classes (linear probe, online classifier)."""
    arms = {
        "rotation-resnet18": "ResNet-18",
        "rotation-c4": "C4-equivariant ResNet-18",
        "rotation-d4": "D4-equivariant ResNet-18",
        "none": "untrained ResNet-18 (floor)",
    }
    columns = {
        **ROTATION,
        "linear (class)": "backbone/linear_acc",
        "online linear (class)": "online_linear/acc",
    }
    return arm_rows(summary, arms, "backbone", columns, "backbone/linear_acc")
