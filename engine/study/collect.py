"""``python -m engine study collect``: training runs made elsewhere (e.g. on a GPU machine that has no evaluation
dependencies, docs/gpu/session.sh) as a study directory that ``study report`` reads.

Each run is matched to the study's arm whose resolved config it is (the study's settings, the arm's method and
options); the keys that neither fix (e.g. ``optim.epochs`` of a short schedule) must be the same in every run and
are recorded as the study's ``extra``, as ``study run --set`` records them. A collected run's results are the
trainer's own monitors at its last epoch (:func:`engine.study.report.training_rows`: the kNN monitor, the online
linear classifier and whether a pretext head ended at chance), not the evaluation's probes: the report names them so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.core.errors import ConfigError
from engine.core.io import atomic_write_json, atomic_write_text
from engine.study.registry import STUDIES, Arm, Study, arm_config, get_study, study_record
from engine.study.report import KNN_MONITOR, ONLINE, training_rows
from engine.train.config import Config, load_config, to_dict
from engine.train.metrics import METRICS_FILE, read_metrics

# Where and on what a run ran: never what makes it an arm.
PLACE = ("train.out", "data.root", "train.device")
# What makes a run an arm besides the study's settings.
IDENTITY = ("model.method", "model.options", "data.dataset")


def flat(cfg: Config) -> dict[str, Any]:
    """A config as dotted keys (``model.options`` stays one dict-valued key)."""
    return {f"{s}.{k}": v for s, sec in to_dict(cfg).items() for k, v in sec.items()}


def match_arm(study: Study, cfg: Config, run_dir: Path) -> tuple[Arm, dict[str, Any]]:
    """The arm of ``study`` whose resolved config ``cfg`` is, up to :data:`PLACE` and the keys neither the study's
    settings nor the arm fix; returns it and the run's values of those free keys. ConfigError when no arm fits."""
    have = flat(cfg)
    nearest: tuple[int, str] | None = None
    for arm in study.arms:
        want = flat(arm_config(study, arm, cfg.train.seed, run_dir, {}, cfg.data.root))
        differ = sorted(k for k in {*have, *want} if k not in PLACE and have.get(k) != want.get(k))
        fixed = [k for k in differ if k in IDENTITY or k in study.settings or k in arm.overrides]
        if not fixed:
            return arm, {k: have[k] for k in differ}
        why = ", ".join(f"{k} = {have.get(k)!r} (arm {arm.name}: {want.get(k)!r})" for k in fixed)
        if nearest is None or len(fixed) < nearest[0]:
            nearest = (len(fixed), why)
    raise ConfigError(
        f"{run_dir}: no arm of the study has this run's config; nearest: {nearest[1] if nearest else '-'}. "
        "Train with the study's settings (python -m engine study run --help lists the studies)"
    )


def finished(run_dir: Path, cfg: Config) -> None:
    """ConfigError unless the run's metrics.jsonl reaches its last epoch (a run cut short is not its arm)."""
    df = read_metrics(run_dir / METRICS_FILE)
    last = int(df["epoch"].max()) if df is not None and "epoch" in df and len(df) else 0
    if last < cfg.optim.epochs:
        raise ConfigError(
            f"{run_dir}: the run stopped at epoch {last} of {cfg.optim.epochs}; "
            "finish it (python -m engine train --resume) before collecting it"
        )


def collect(name: str, run_dirs: list[Path], out: Path) -> list[Path]:
    """Write ``out/<arm>-s<seed>/eval.json`` (the runs' monitors) with copies of each run's config.yaml and
    metrics.jsonl, and ``out/study.json``; every run is checked before anything is written."""
    study = get_study(name)
    found: list[tuple[Arm, int, dict[str, Any], Path, list[dict[str, Any]]]] = []
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "config.yaml").is_file() or not (run_dir / METRICS_FILE).is_file():
            raise ConfigError(f"{run_dir} is not a training run: it needs config.yaml and {METRICS_FILE}")
        cfg = load_config(run_dir / "config.yaml")
        finished(run_dir, cfg)
        arm, free = match_arm(study, cfg, run_dir)
        rows = training_rows(run_dir)
        if not any(r["space"] in (ONLINE, KNN_MONITOR) for r in rows):
            raise ConfigError(
                f"{run_dir}: {METRICS_FILE} holds no monitor to collect; "
                "train with train.knn_every > 0 or train.online_linear=true"
            )
        found.append((arm, cfg.train.seed, free, run_dir, rows))
    if not found:
        raise ConfigError("name at least one run directory to collect")
    extras = {json.dumps(free, sort_keys=True) for _, _, free, *_ in found}
    if len(extras) > 1:
        raise ConfigError(
            "the runs differ in settings the study does not fix: " + " vs ".join(sorted(extras))
            + "; collect each setting into its own study directory"
        )  # fmt: skip
    seen: dict[tuple[str, int], Path] = {}
    for arm, seed, _, run_dir, _ in found:
        if (arm.name, seed) in seen:
            raise ConfigError(f"{run_dir} and {seen[arm.name, seed]} are both {arm.name} seed {seed}")
        seen[arm.name, seed] = run_dir
    extra = found[0][2]
    paths = []
    for arm, seed, _, run_dir, rows in found:
        dest = Path(out) / f"{arm.name}-s{seed}"
        for f in ("config.yaml", METRICS_FILE):
            atomic_write_text(dest / f, (run_dir / f).read_text())
        doc = {
            "study": study.dataset, "arm": arm.name, "method": arm.method, "seed": seed,
            "overrides": {**study.settings, **arm.overrides, **extra},
            "source": {"run": str(run_dir), "dataset": study.dataset, "results": "training monitors, last epoch"},
            "results": rows,
        }  # fmt: skip
        paths.append(atomic_write_json(dest / "eval.json", doc))
    arms = tuple({a.name: a for a, *_ in found}.values())
    seeds = sorted({s for _, s, *_ in found})
    atomic_write_json(Path(out) / "study.json", study_record(name, study, Path(out), seeds, arms, extra))
    return paths


def add_collect_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Collect finished training runs (each a directory with config.yaml and metrics.jsonl, e.g. from a GPU "
        "session) into a study directory: each run is matched to the study arm whose settings it has, and its "
        "results are the trainer's monitors at the last epoch (kNN monitor, online linear classifier). Then "
        "`python -m engine study report DIR`."
    )
    p.add_argument("study", choices=sorted(STUDIES), help="the study the runs belong to")
    p.add_argument("runs", nargs="+", type=Path, help="training run directories")
    p.add_argument("--out", type=Path, required=True, help="study directory to write")
    p.set_defaults(func=_cmd_collect)


def _cmd_collect(args: argparse.Namespace) -> int:
    for path in collect(args.study, args.runs, args.out):
        print(f"wrote {path}")
    print(f"next: python -m engine study report {args.out}")
    return 0
