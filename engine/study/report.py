"""``python -m engine study report``: aggregate a study's ``eval.json`` files into tables (mean ± std over seeds)
and PNG plots (factor probes per method, invariance and displacement-prediction sweeps per augmentation family).

Pure functions from result documents to numbers (:func:`aggregate`), to markdown (:func:`summary_table`,
:func:`family_table`) and to figures (:func:`plot_probes`, :func:`plot_sweeps`); the CLI wires them together.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from engine.augment import FAMILIES
from engine.augment.pretext import hidden_by_base
from engine.core.errors import ConfigError
from engine.core.io import atomic_write, atomic_write_json, atomic_write_text
from engine.data import DataSpec
from engine.eval.displacement import scored_space
from engine.eval.evaluate import TABLE_COLUMNS, pretext_baselines
from engine.eval.measures import not_encoded_families
from engine.eval.robustness import PERTURBATION_LABELS, PERTURBATIONS
from engine.lab.studies import CONTROLS, Stat, noise_word, read_summary
from engine.study.registry import same_arms
from engine.train.metrics import (
    CHANCE_EPOCHS,
    CHANCE_TOL,
    METRICS_FILE,
    at_chance,
    checked_heads,
    read_metrics,
)

# The evaluation's comparison columns (header, space, metric); "disp" = the space whose displacement is scored
# (engine.eval.displacement.scored_space: EquiMod's own "equivariant" predictor, else projector, else backbone).
SUMMARY_COLUMNS = TABLE_COLUMNS
FACTORS = ("hue", "scale", "rotation", "x", "y", "image_hue", "image_saturation")
# Metrics of the sweep rows (engine.eval.displacement): sweep/<family>@<strength>/<kind>.
INVARIANCE = "invariance/relative"  # 1 - E|s(a(x)) - s(x)|^2 / E|s(x) - s(x')|^2 (docs/measures.md)
PREDICTION = "disp/method/cos"  # cos(Δ, Δ̂) of the model's own or the post-hoc predictor
GAIN = "disp/gain/cos"  # the predictor's cos minus its strongest baseline's
NOT_ENCODED_MARK = " (not encoded)"
ONLINE = "online_linear"  # the space of the trainer's online linear classifier row (train.online_linear)
KNN_MONITOR = "knn_monitor"  # the space of the trainer's kNN monitor row (train.knn_every > 0)
TRAINING = "training"  # the space of rows read from the training log itself (engine.train.metrics)
AT_CHANCE = "_at_chance"  # <task>_at_chance: the head's loss ended training at ln k (1.0) or not (0.0)
PRETEXT_SPACES = ("rotation_logits", "pretext_logits")  # engine.methods.protocol.logits_key
ROBUSTNESS = tuple(PERTURBATIONS)  # engine.eval.robustness: the conditions, headed by PERTURBATION_LABELS
# Arm-name prefixes of studies that pair one transformation two ways: (prefix a, prefix b, label a, label b, the
# head kind of a's arms for engine.augment.pretext.hidden_by_base, None when they have no head).
PAIRINGS = (
    ("inv-", "eq-", "as invariance (SimCLR + it)", "as equivariance (E-SSL head)", None),
    ("pretext-", "essl-", "pretext alone", "E-SSL head", "pretext"),
)
CLEAN = "-clean"  # engine.study.registry's twin suffix: the head's base view never applies its task


def family_header(family: str, kind: str) -> str:
    """A family's column or panel name; displacement kinds mark the families the 15-d vector cannot encode."""
    mark = kind.startswith("disp/") and family in not_encoded_families()
    return family + (NOT_ENCODED_MARK if mark else "")


def training_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The trainer's own monitors from the run's metrics.jsonl, as eval rows: the last recorded online linear
    classifier accuracy (on detached backbone features, test split, as Understanding-ESSL tracks it), the last
    kNN monitor accuracy (E-SSL's: backbone, k = train.knn_k, t = train.knn_t, bank and queries as data.knn_bank and
    data.knn_queries), and whether each pretext head ended at chance (:func:`chance_rows`); none for a monitor that
    was off."""
    path = Path(run_dir) / METRICS_FILE
    df = read_metrics(path) if path.is_file() else None
    rows = []
    for column, space in (("online_linear_acc", ONLINE), ("knn_acc", KNN_MONITOR)):
        acc = df[column].dropna() if df is not None and column in df else ()
        if len(acc):
            rows.append({"space": space, "metric": "acc", "value": float(acc.iloc[-1])})
    return rows + (chance_rows(df) if df is not None else [])


def chance_rows(df) -> list[dict[str, Any]]:
    """Per pretext head of a metrics frame logged over enough epochs to judge: 1.0 when its loss ended training at
    ln k or above (no better than a uniform guess, :func:`engine.train.metrics.at_chance`), else 0.0; over seeds the
    mean is the fraction of seeds at chance. A head logged over too few epochs gets no row (not a 0)."""
    flagged = {f.key for f in at_chance(df)}
    return [
        {
            "space": TRAINING,
            "metric": f"{key.removeprefix('loss/')}{AT_CHANCE}",
            "value": float(key in flagged),
        }
        for key in checked_heads(df)
    ]


def missing_baselines(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Chance and ceiling rows for a pretext accuracy written before the evaluator added them (same function)."""
    have = {(r["space"], r["metric"]) for r in doc.get("results", [])}
    out = []
    for sp, m in sorted(have):
        if sp not in PRETEXT_SPACES or not m.endswith("_acc"):
            continue
        task = m.removesuffix("_acc")
        dataset = (doc.get("source") or {}).get("dataset") or doc.get("study", "")
        for name, value in pretext_baselines(task, DataSpec(str(dataset), "test")).items():
            if (sp, f"{task}_{name}") not in have:
                out.append({"space": sp, "metric": f"{task}_{name}", "value": value})
    return out


def load_results(study_dir: Path) -> list[dict[str, Any]]:
    """Every ``<study_dir>/<arm>-s<seed>/eval.json`` written by ``study run`` (ConfigError if there is none);
    a result written before a training row existed (online classifier, head at chance) gets it from its run's
    metrics.jsonl."""
    docs = []
    for p in sorted(Path(study_dir).glob("*/eval.json")):
        d = json.loads(p.read_text())
        if "arm" not in d or "seed" not in d:
            continue
        have = {(r.get("space"), r.get("metric")) for r in d.get("results", [])}
        # a reused run (study run --reuse) keeps its metrics.jsonl where it was trained
        trained = Path(d["reused_from"]) if isinstance(d.get("reused_from"), str) else p.parent
        d["results"] = [
            *d.get("results", []),
            *(r for r in training_rows(trained) if (r["space"], r["metric"]) not in have),
        ]
        d["results"] = [*d.get("results", []), *missing_baselines(d)]
        docs.append(d)
    if not docs:
        raise ConfigError(
            f"no study results in {study_dir} (expected <arm>-s<seed>/eval.json); "
            "run `python -m engine study run <study> --out DIR` first"
        )
    return docs


def disp_space(keys) -> str:
    """The scored displacement space among the (space, metric) ``keys`` (:func:`scored_space` of their spaces)."""
    return scored_space(s for s, _ in keys)


def with_disp(vals: dict[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    """``vals`` plus the entries of its scored displacement space again under the space name "disp"."""
    disp = disp_space(vals)
    return {**vals, **{("disp", m): v for (s, m), v in vals.items() if s == disp}}


def _values(doc: dict[str, Any]) -> dict[tuple[str, str], float]:
    return with_disp({(r["space"], r["metric"]): float(r["value"]) for r in doc["results"]})


def arm_order(declared: list[str], seen: list[str]) -> list[str]:
    """The ``seen`` arms in the study's declared order (study.json), then the undeclared ones as first seen."""
    seen = list(dict.fromkeys(seen))
    return [a for a in declared if a in seen] + [a for a in seen if a not in declared]


def aggregate(docs: list[dict[str, Any]]) -> dict[str, dict[tuple[str, str], Stat]]:
    """arm -> (space, metric) -> mean/std over the arm's seeds (metrics missing in a seed are left out)."""
    per_arm: dict[str, list[dict[tuple[str, str], float]]] = {}
    for d in docs:
        per_arm.setdefault(d["arm"], []).append(_values(d))
    out = {}
    for arm, runs in per_arm.items():
        keys = set().union(*runs)
        out[arm] = {}
        for k in keys:
            xs = np.array([r[k] for r in runs if k in r and math.isfinite(r[k])], np.float64)
            std = float(xs.std(ddof=1)) if len(xs) > 1 else 0.0
            out[arm][k] = Stat(float(xs.mean()) if len(xs) else math.nan, std, len(xs))
    return out


def summary_stats(summary: dict[str, Any]) -> dict[str, dict[tuple[str, str], Stat]]:
    """arm -> (space, metric) -> Stat read back from a ``summary.json`` of :func:`write_report` (its inverse)."""
    return {
        arm: with_disp(
            {
                tuple(k.split("/", 1)): Stat(float(v["mean"]), float(v["std"]), int(v["n"]))
                for k, v in metrics.items()
            }
        )
        for arm, metrics in summary.get("metrics", {}).items()
    }


# The study.json fields a summary records and a merge checks.
PROVENANCE = ("study", "dataset", "settings", "extra")


def carry_over(
    path: Path, here: set[str], seeds: list[int], record: dict[str, Any]
) -> tuple[dict[str, dict[tuple[str, str], Stat]], list[dict[str, Any]], dict[str, str]]:
    """The arms of an earlier report's ``summary.json`` at ``path`` that are not ``here`` (arms with results or
    failure records in this study directory), their failure records, and the names they had there where those
    differ. The summary may be of this study or of another study that declares the same arm (same method and
    options, :func:`engine.study.registry.same_arms`): its results are carried under this study's arm name. A
    ConfigError when the summary cannot be read, was run on other seeds, another dataset, settings or extra
    overrides, or is of a study that shares no arm with this one: a table that mixed them would compare unlike
    runs."""
    old = read_summary(path)
    if old is None:
        raise ConfigError(
            f"--merge {path}: not a readable summary.json written by `study report` (missing, not JSON, or no metrics)"
        )
    if sorted(old.get("seeds", [])) != seeds:
        raise ConfigError(
            f"--merge {path}: its seeds {old.get('seeds')} differ from this study's {seeds}; "
            "run the same seeds so every row is a mean over the same seeds"
        )
    for key in PROVENANCE[1:]:
        if key in old and key in record and old[key] != record[key]:
            raise ConfigError(
                f"--merge {path}: its {key} {old[key]!r} differs from this study's {record[key]!r}"
            )
    source, target = old.get("study"), record.get("study")
    names = None  # None: the same study, every arm under its own name
    if source is not None and target is not None and source != target:
        names = same_arms(source, target)
        if not names:
            raise ConfigError(
                f"--merge {path}: its study {source!r} differs from this study's {target!r} and declares none of "
                "its arms (same method and options); merge a summary of this study or of one that shares arms"
            )
    try:
        stats = summary_stats(old)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"--merge {path}: a metric is not a mean/std/n record ({e!r})") from None
    here_name = (lambda arm: arm) if names is None else names.get  # None: not an arm of this study
    carried, was = {}, {}
    for arm, st in stats.items():
        if (new := here_name(arm)) is not None and new not in here:
            carried[new] = st
            if new != arm:
                was[new] = arm
    failed = [
        {**f, "arm": here_name(f["arm"])}
        for f in old.get("failed", [])
        if isinstance(f, dict) and isinstance(f.get("arm"), str) and here_name(f["arm"]) not in (None, *here)
    ]
    return carried, failed, was


FAILED = "failed.json"  # written by study run beside an arm's last good checkpoint when its training diverged
RETRY = f"delete its {FAILED} and rerun the study to retry it, e.g. with another --set optim.lr"


def failed_arms(study_dir: Path) -> list[dict[str, Any]]:
    """The ``failed.json`` records of a study directory (arm, seed, reason), in name order."""
    out = []
    for path in sorted(Path(study_dir).glob(f"*/{FAILED}")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and {"arm", "seed", "reason"} <= set(doc):
            out.append(doc)
    return out


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _cell(stats: dict[tuple[str, str], Stat], key: tuple[str, str], digits: int = 3) -> str:
    s = stats.get(key)
    return "—" if s is None else s.fmt(digits)


def _const(stats: dict[tuple[str, str], Stat], key: tuple[str, str], digits: int = 3) -> str:
    """A reference value that does not vary over seeds (chance, a ceiling): its mean alone."""
    s = stats.get(key)
    return "—" if s is None or s.n == 0 else f"{s.mean:.{digits}f}"


def summary_table(agg: dict[str, dict[tuple[str, str], Stat]], arms: list[str]) -> str:
    """One row per arm: shape-class accuracy, factor R², method-specific scores, displacement prediction; only the
    columns some arm has a value for (a study scored by the training monitors alone has none of them)."""
    columns = [c for c in SUMMARY_COLUMNS if any((c[1], c[2]) in agg[a] for a in arms)]
    if not columns:
        return ""
    rows = []
    for arm in arms:
        n = max((s.n for s in agg[arm].values()), default=0)
        cells = [_cell(agg[arm], (sp, m)) for _, sp, m in columns]
        rows.append([arm, str(n), *cells, disp_space(k for k in agg[arm] if k[0] != "disp")])
    return _md(["arm", "seeds"] + [c[0] for c in columns] + ["Δ scored in"], rows)


def monitor_table(agg: dict[str, dict[tuple[str, str], Stat]], arms: list[str]) -> str:
    """Per arm: the trainer's monitors at the end of training (kNN monitor, online linear classifier) beside the
    evaluation's kNN and linear probe where it ran; "" when no arm has a kNN monitor row."""
    if not any((KNN_MONITOR, "acc") in agg[a] for a in arms):
        return ""
    columns = (
        ("kNN monitor", KNN_MONITOR, "acc"), ("online linear", ONLINE, "acc"),
        ("kNN (evaluation)", "backbone", "knn_acc"), ("linear probe (evaluation)", "backbone", "linear_acc"),
    )  # fmt: skip
    present = [c for c in columns if any((c[1], c[2]) in agg[a] for a in arms)]
    rows = [
        [
            a,
            str(max((s.n for s in agg[a].values()), default=0)),
            *(_cell(agg[a], (sp, m)) for _, sp, m in present),
        ]
        for a in arms
    ]
    return _md(["arm", "seeds"] + [c[0] for c in present], rows)


def head_of(stats: dict[tuple[str, str], Stat]) -> tuple[str, str] | None:
    """(logits space, task) of the arm's pretext head, read from its ``<task>_acc`` row; None without a head."""
    for sp, m in stats:
        if sp in PRETEXT_SPACES and m.endswith("_acc"):
            return sp, m.removesuffix("_acc")
    return None


def seeds_at_chance(stats: dict[tuple[str, str], Stat], task: str) -> str:
    """ "<m> of <n> seeds": how many of the arm's seeds ended training with the head's loss at ln k (a uniform
    guess: its accuracy is chance however the curve looks); "—" for results without the training row."""
    s = stats.get((TRAINING, f"{task}{AT_CHANCE}"))
    return "—" if s is None or s.n == 0 else f"{round(s.mean * s.n)} of {s.n}"


def pretext_table(agg: dict[str, dict[tuple[str, str], Stat]], arms: list[str]) -> str:
    """Per arm: its pretext head's accuracy beside chance and the identifiability ceiling and the seeds whose head
    loss ended at ln k, then what the backbone knows of the classes (online linear classifier during training,
    linear probe and kNN after)."""
    rows = []
    for arm in arms:
        st, head = agg[arm], head_of(agg[arm])
        n = max((x.n for x in st.values()), default=0)
        sp, task = head or ("", "")
        task_cells = (
            [task, _cell(st, (sp, f"{task}_acc")), _const(st, (sp, f"{task}_chance")),
             _const(st, (sp, f"{task}_ceiling")), seeds_at_chance(st, task)]
            if head else ["—", "—", "—", "—", "—"]
        )  # fmt: skip
        rows.append(
            [arm, str(n), *task_cells, _cell(st, (ONLINE, "acc")), _cell(st, ("backbone", "linear_acc")),
             _cell(st, ("backbone", "knn_acc"))]
        )  # fmt: skip
    header = ["arm", "seeds", "task", "pretext acc", "chance", "ceiling", "loss at ln k", "online linear", "linear",
              "kNN"]  # fmt: skip
    return _md(header, rows)


def pairing_table(
    agg: dict[str, dict[tuple[str, str], Stat]],
    arms: list[str],
    key: tuple[str, str] = ("backbone", "linear_acc"),
) -> str:
    """Each transformation used two ways (:data:`PAIRINGS`), side by side on ``key``, with the difference and
    whether it is beyond noise (:func:`noise_word`): one table per pairing the study has, its two ways named in the
    header; "" when the study has no such pairs."""
    tables = []
    for pa, pb, la, lb, kind in PAIRINGS:
        rows, plain = [], False
        for other in arms:
            if not other.startswith(pb) or (first := partner(agg, pa, other.removeprefix(pb), kind)) is None:
                continue
            a, b = agg[first].get(key), agg[other].get(key)
            diff = "—" if a is None or b is None else f"{b.mean - a.mean:+.3f}"
            mark = "" if first == pa + other.removeprefix(pb) else " ¹"
            plain |= bool(mark)
            rows.append(
                [other.removeprefix(pb), _cell(agg[first], key) + mark, _cell(agg[other], key), diff,
                 noise_word(a, b)]
            )  # fmt: skip
        if rows:
            why = (
                "it has no head" if kind is None else "its head's base view never applies the transformation"
            )
            note = f"\n\n¹ {pa}<transformation> itself: nothing to mend ({why})" if plain else ""
            tables.append(_md(["transformation", la, lb, "second − first", "second vs first"], rows) + note)
    return "\n\n".join(tables)


def partner(agg: dict[str, Any], prefix: str, suffix: str, kind: str | None) -> str | None:
    """The arm ``prefix + suffix``; for a `-clean` twin without one, the plain arm when that is already clean
    (no head, or a head whose base view never applies the task); None when neither is in ``agg``."""
    if prefix + suffix in agg:
        return prefix + suffix
    task, plain = suffix.removesuffix(CLEAN), prefix + suffix.removesuffix(CLEAN)
    if suffix.endswith(CLEAN) and plain in agg and (kind is None or not hidden_by_base(kind, task)):
        return plain
    return None


def control_table(
    agg: dict[str, dict[tuple[str, str], Stat]],
    arms: list[str],
    key: tuple[str, str] = ("backbone", "linear_acc"),
) -> str:
    """Each trained arm against both :data:`CONTROLS` on ``key``: the difference and whether it is beyond noise,
    so a gain over SimCLR that SimCLR at the doubled lr also gets is seen as the lr's; "" unless the study has
    both controls."""
    if not all(c in agg and key in agg[c] for c in CONTROLS):
        return ""
    rows = []
    for arm in arms:
        a = agg[arm].get(key)
        if arm in (*CONTROLS, "none") or a is None:
            continue
        cells = []
        for c in CONTROLS:
            ref = agg[c][key]
            cells += [f"{a.mean - ref.mean:+.3f}", noise_word(ref, a)]
        rows.append([arm, _cell(agg[arm], key), *cells])
    if not rows:
        return ""
    head = [
        f"{key[1]} ({key[0]})",
        *(x for c in CONTROLS for x in (f"− {c} ({_cell(agg[c], key)})", f"vs {c}")),
    ]
    return _md(["arm", *head], rows)


def robustness_table(agg: dict[str, dict[tuple[str, str], Stat]], arms: list[str]) -> str:
    """Linear-probe accuracy on clean test images and under each test-time perturbation (engine.eval.robustness),
    backbone space; "" when no arm has robustness rows."""
    if not any(("backbone", "robust_acc/clean") in agg[a] for a in arms):
        return ""
    rows = [[arm, *(_cell(agg[arm], ("backbone", f"robust_acc/{c}")) for c in ROBUSTNESS)] for arm in arms]
    return _md(["arm", *(PERTURBATION_LABELS[c] for c in ROBUSTNESS)], rows)


def sweep_keys(agg: dict[str, dict[tuple[str, str], Stat]], space: str, kind: str) -> dict[str, list[float]]:
    """family -> sorted strengths present in the results for ``sweep/<family>@<s>/<kind>`` rows of ``space``."""
    fam: dict[str, set[float]] = {}
    for stats in agg.values():
        for sp, m in stats:
            if sp == space and m.startswith("sweep/") and m.endswith(f"/{kind}"):
                point = m[len("sweep/") : -len(kind) - 1]
                if point.count("@") != 1 or "/" in point:  # e.g. sweep/disp/...: over all families
                    continue
                family, strength = point.split("@")
                if family in FAMILIES:
                    fam.setdefault(family, set()).add(float(strength))
    return {f: sorted(s) for f, s in fam.items()}


def _sweep_stat(stats, space: str, family: str, s: float, kind: str) -> Stat | None:
    return stats.get((space, f"sweep/{family}@{s:g}/{kind}"))


def family_table(
    agg: dict[str, dict[tuple[str, str], Stat]],
    arms: list[str],
    space: str,
    kind: str,
    skip_neutral: bool = True,
) -> str:
    """One row per arm, one column per augmentation family: ``kind`` averaged over the family's non-identity
    strengths, each op once (:data:`INVARIANCE`, :data:`PREDICTION`, :data:`GAIN`; old files: ``invariance``,
    ``cos``). Displacement columns of families the parameter vector cannot encode are marked "(not encoded)";
    undefined (NaN) points are left out of the mean, and a family with none reads "n/a"."""

    families = sweep_keys(agg, space, kind)
    names = [f for f in FAMILIES if f in families]
    if not names:
        return ""
    rows = []
    for arm in arms:
        cells = []
        for f in names:
            pts = _distinct(f, families[f], skip_neutral)
            stats = [st for s in pts if (st := _sweep_stat(agg[arm], space, f, s, kind)) is not None]
            xs = [st.mean for st in stats if math.isfinite(st.mean)]
            cells.append(f"{np.mean(xs):.3f}" if xs else ("n/a" if stats else "—"))
        rows.append([arm, *cells])
    return _md(["arm", *[family_header(f, kind) for f in names]], rows)


def _distinct(family: str, strengths: list[float], skip_neutral: bool = True) -> list[float]:
    """``strengths`` with each op once (rotation 360 = 0) and, if asked, without the identity."""
    fam, out = FAMILIES[family], []
    for s in strengths:
        if skip_neutral and fam.same(s, fam.neutral):
            continue
        if not any(fam.same(s, t) for t in out):
            out.append(s)
    return out


def _pyplot():
    import matplotlib  # noqa: PLC0415 (the backend is chosen before pyplot is imported)

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def plot_probes(agg, arms: list[str], path: Path, title: str) -> Path | None:
    """Two panels: shape-class kNN/linear accuracy per arm, and factor-probe R² (hue, scale, ...) per arm; None
    when no arm was probed (a study of training monitors only)."""
    groups = [("kNN", "knn_acc"), ("linear", "linear_acc")]
    keys = [("backbone", m) for _, m in groups] + [("backbone", f"r2_{f}") for f in FACTORS]
    if not any(k in agg[a] for a in arms for k in keys):
        return None
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 2]})
    _bars(a1, agg, arms, [("backbone", m) for _, m in groups], [g for g, _ in groups], "shape-class accuracy")
    _bars(a2, agg, arms, [("backbone", f"r2_{f}") for f in FACTORS], list(FACTORS), "factor probe R² (test)")
    a2.legend(fontsize=8, ncols=min(len(arms), 4), loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_pretext(agg, arms: list[str], path: Path, title: str) -> Path | None:
    """Each arm with a pretext head: its accuracy (bar, ± std over seeds) between chance (grey tick) and the
    identifiability ceiling (black tick); None when no arm has a head."""
    heads = [(a, h) for a in arms if (h := head_of(agg[a]))]
    if not heads:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(heads) + 2), 4))
    x = np.arange(len(heads))
    for i, (arm, (sp, task)) in enumerate(heads):
        acc = agg[arm].get((sp, f"{task}_acc"))
        ax.bar(i, acc.mean if acc else np.nan, 0.6, yerr=acc.std if acc else 0, capsize=3, color="tab:blue")
        for name, colour in (("chance", "grey"), ("ceiling", "black")):
            if (ref := agg[arm].get((sp, f"{task}_{name}"))) is not None:
                ax.hlines(ref.mean, i - 0.4, i + 0.4, colors=colour, lw=2, label=name if i == 0 else None)
    ax.set_xticks(x, [a for a, _ in heads], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("pretext accuracy (test)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{title}: pretext accuracy (chance, ceiling)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _bars(ax, agg, arms, keys, labels, ylabel) -> None:
    width = 0.8 / max(len(arms), 1)
    x = np.arange(len(keys))
    for i, arm in enumerate(arms):
        st = [agg[arm].get(k) for k in keys]
        mean = [s.mean if s else np.nan for s in st]
        err = [s.std if s else 0.0 for s in st]
        ax.bar(x + (i - (len(arms) - 1) / 2) * width, mean, width, yerr=err, capsize=2, label=arm)
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="black", lw=0.5)
    ax.grid(axis="y", alpha=0.3)


def plot_sweeps(
    agg, arms: list[str], space: str, kind: str, path: Path, title: str, ylabel: str
) -> Path | None:
    """One panel per augmentation family: ``kind`` against strength, a line per arm with a ±std band; None when
    no arm has a sweep."""

    families = sweep_keys(agg, space, kind)
    names = [f for f in FAMILIES if f in families]
    if not names:
        return None
    plt = _pyplot()
    cols = 3
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, f in zip(axes.flat, names, strict=False):
        xs = np.array(families[f])
        for arm in arms:
            st = [_sweep_stat(agg[arm], space, f, s, kind) for s in xs]
            m = np.array([s.mean if s else np.nan for s in st])
            sd = np.array([s.std if s else 0.0 for s in st])
            ax.plot(xs, m, marker="o", ms=3, label=arm)
            ax.fill_between(xs, m - sd, m + sd, alpha=0.15)
        ax.axvline(FAMILIES[f].neutral, color="grey", lw=0.6, ls=":")
        ax.set_title(FAMILIES[f].label + family_header(f, kind)[len(f) :], fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:

    plt = _pyplot()
    try:
        return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)


def write_report(
    study_dir: Path, out: Path, title: str | None = None, merge: Path | None = None
) -> list[Path]:
    """Tables (``tables.md``), the aggregate (``summary.json``) and three PNG plots of one study into ``out``;
    ``merge``: an earlier report's summary.json whose arms this study directory has no results for are kept."""

    docs = load_results(study_dir)
    agg = aggregate(docs)
    declared = Path(study_dir) / "study.json"
    record = json.loads(declared.read_text()) if declared.is_file() else {}
    name = record.get("study")
    title = title or f"study {name or docs[0].get('study', Path(study_dir).name)}"
    seeds = sorted({d["seed"] for d in docs})
    failed = failed_arms(study_dir)
    carried: dict[str, dict[tuple[str, str], Stat]] = {}
    was: dict[
        str, str
    ] = {}  # a carried arm's name in the merged summary, where that study named it otherwise
    if merge is not None:
        here = {*agg, *(f["arm"] for f in failed)}
        carried, old_failed, was = carry_over(merge, here, seeds, record)
        agg, failed = {**agg, **carried}, failed + old_failed
    arms = arm_order(record.get("arms", []), [d["arm"] for d in docs] + list(carried))
    md = [f"### {title}: summary (mean ± std over seeds {seeds})"]
    tables = (
        ("", summary_table(agg, arms)),
        ("relative invariance per augmentation family in the backbone, mean over strengths "
         "(1 − E‖s(a(x)) − s(x)‖² / E‖s(x) − s(x′)‖²: 1 = a view is its image, 0 = as far as another image)",
         family_table(agg, arms, "backbone", INVARIANCE)),
        ("displacement prediction per family: cos(Δ, Δ̂) in the scored space (EquiMod: its own predictor; "
         "else the post-hoc ridge); not encoded = the 15-d parameter vector has no entry for the family",
         family_table(agg, arms, "disp", PREDICTION)),
        ("gain per family: cos(Δ, Δ̂) minus the strongest baseline's (mean Δ of the family and strength, "
         "parameters only, image only, shuffled parameters); > 0 only where the predictor beats every guess",
         family_table(agg, arms, "disp", GAIN)),
        ("training monitors at the last epoch: the kNN monitor (backbone, weighted cosine kNN, k and t as the runs' "
         "train.knn_k and train.knn_t, the runs' data.knn_bank train items as bank, data.knn_queries test items as "
         "queries) and the online linear classifier (detached backbone features, test split)",
         monitor_table(agg, arms)),
        ("pretext heads: accuracy beside chance and the identifiability ceiling; \"loss at ln k\": seeds whose "
         f"head loss (epoch mean) stayed above ln k less {CHANCE_TOL:.0%} (no better than a uniform guess) for its "
         f"last {CHANCE_EPOCHS} or more epochs; what the backbone knows of the classes",
         pretext_table(agg, arms) if any(head_of(agg[a]) for a in arms) else ""),
        ("one transformation two ways: linear-probe accuracy (backbone); \"noise\" = within twice the larger "
         "seed standard deviation", pairing_table(agg, arms)),
        ("against the learning-rate control: linear-probe accuracy (backbone) minus SimCLR's and minus SimCLR's "
         "at E-SSL's doubled lr (simclr-lr2); \"noise\" = within twice the larger seed standard deviation",
         control_table(agg, arms)),
        ("robustness: linear-probe accuracy under test-time perturbations (backbone; probe fitted on clean "
         "features)", robustness_table(agg, arms)),
    )  # fmt: skip
    md += [item for head, table in tables if table for item in ([f"### {head}"] if head else []) + [table]]
    kept = [a for a in arms if a in carried]
    if kept:
        md += [f"### carried over from an earlier report, {merge} (not re-run here; same seeds {seeds}): "
               + ", ".join(f"{a} ({was[a]} there)" if a in was else a for a in kept)]  # fmt: skip
    if failed:
        md += [
            "### not evaluated: training diverged",
            _md(["arm", "seed", "why"], [[f["arm"], str(f["seed"]), f["reason"]] for f in failed]),
        ]
    summary = {
        arm: {f"{sp}/{m}": s._asdict() for (sp, m), s in sorted(stats.items()) if sp != "disp"}
        for arm, stats in agg.items()
    }
    paths = [
        atomic_write_text(Path(out) / "tables.md", "\n\n".join(md) + "\n"),
        atomic_write_json(
            Path(out) / "summary.json",
            {
                "arms": arms, "seeds": seeds, "metrics": summary, "failed": failed,
                **{k: record[k] for k in PROVENANCE if k in record},
                **({"carried": {"from": str(merge), "arms": kept, **({"was": was} if was else {})}} if kept else {}),
            },
        ),
        plot_probes(agg, arms, Path(out) / "factor_probes.png", title),
        plot_sweeps(
            agg, arms, "backbone", INVARIANCE, Path(out) / "sweep_invariance.png",
            f"{title}: relative invariance in the backbone (0 = as far as another image)", "relative invariance",
        ),
        plot_sweeps(
            agg, arms, "disp", PREDICTION, Path(out) / "sweep_prediction.png",
            f"{title}: predicted vs actual displacement cos(Δ, Δ̂)", "cos(Δ, Δ̂)",
        ),
        plot_pretext(agg, arms, Path(out) / "pretext.png", title),
    ]  # fmt: skip
    return [p for p in paths if p is not None]


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Aggregate a study directory's <arm>-s<seed>/eval.json files: tables.md (summary, invariance and "
        "displacement prediction per augmentation family, training monitors; mean ± sample std over seeds), "
        "summary.json and PNG plots of what was measured (factor_probes.png, sweep_invariance.png, "
        "sweep_prediction.png, pretext.png)."
    )
    p.add_argument("study_dir", type=Path, help="directory written by `study run`")
    p.add_argument("--out", type=Path, default=None, help="where to write (default: <study_dir>/report)")
    p.add_argument("--title", default=None, help="figure and table title (default: the study name)")
    p.add_argument(
        "--merge", type=Path, default=None, metavar="SUMMARY_JSON",
        help="an earlier report's summary.json on the same seeds, dataset and settings: its arms that study_dir has "
        "no results for are kept (e.g. after `study run ... --arms X` added one arm); it may be another study's, "
        "whose arms with this study's method and options are kept under this study's names (e.g. "
        "invariance_vs_equivariance's eq-* arms are transforms' essl-* arms); the tables name them",
    )  # fmt: skip
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    out = args.out or args.study_dir / "report"
    for path in write_report(args.study_dir, out, args.title, args.merge):
        print(f"wrote {path}")
    print((out / "tables.md").read_text())
    return 0
