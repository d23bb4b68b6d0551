"""``python -m engine study``: train every arm of a study for several seeds, evaluate each, report mean and spread.

A study is a registry entry (:data:`engine.study.registry.STUDIES`): one dataset, the settings every arm shares
(backbone, width, batch, epochs, schedule) and its arms (a method plus the few options that make it that arm, e.g.
E-SSL at the shared lr vs its reference doubled lr). ``study run`` is resumable: each ``<out>/<arm>-s<seed>/`` is a
normal training run (continued with ``--resume`` semantics when it was interrupted) whose ``eval.json`` marks it
done, so rerunning the same command only does what is missing. An arm with a ``checkpoint`` (``study run
--checkpoint``, e.g. an imported model) is evaluation-only: no training, the same evaluators and seeds, a row beside
the trained arms. ``study report`` (engine.study.report) aggregates the ``eval.json`` files into tables and plots.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.core.errors import ConfigError
from engine.core.io import atomic_write_json
from engine.eval.context import EvalContext
from engine.eval.evaluate import evaluate, write_results
from engine.store.build import EmbedJob, build_store, resolve_device
from engine.store.format import StoreOptions, open_store
from engine.study.collect import add_collect_args
from engine.study.registry import STUDIES, Arm, Study, arm_config, get_study, select_arms, study_record
from engine.study.report import FAILED, RETRY, add_report_args, failed_arms, training_rows
from engine.train.checkpoint import read_info, stem_of
from engine.train.config import parse_overrides, to_yaml
from engine.train.loop import NonFiniteLossError, fit

log = logging.getLogger(__name__)


def checkpoint_arm(path: str | Path) -> Arm:
    """An evaluation-only arm for checkpoint ``path`` (named by its stem; CheckpointError if it is not one)."""
    info = read_info(path)
    stem = stem_of(path)
    name = Path(path).name if Path(path).is_dir() else stem.name  # a run dir is named by its folder
    fmt = (info.get("imported") or {}).get("format")
    note = f"imported ({fmt}), evaluation only" if fmt else "existing checkpoint, evaluation only"
    return Arm(name, str(info["method"]), note=note, checkpoint=str(stem.with_suffix(".json")))


def with_checkpoints(arms: tuple[Arm, ...], checkpoints: list[str | Path] | None) -> tuple[Arm, ...]:
    """``arms`` followed by one evaluation-only arm per checkpoint; ConfigError when two arms share a name."""
    added = tuple(checkpoint_arm(c) for c in checkpoints or ())
    names = [a.name for a in (*arms, *added)]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ConfigError(f"arm name(s) {clash} used twice; rename the checkpoint(s) or leave out those arms")
    return (*arms, *added)


@dataclass(frozen=True)
class EvalSizes:
    """How much of each split the evaluation uses (smaller in tests)."""

    probe_cap: int = EvalContext.probe_cap  # the evaluation's own defaults (engine.eval.evaluate)
    n_fit: int = EvalContext.n_fit
    n_eval: int = EvalContext.n_eval
    n_sweep: int = EvalContext.n_sweep
    store_limit: int | None = None  # embed only the first N items of each split (tests)


def run_arm(
    study: Study,
    arm: Arm,
    seed: int,
    out: Path,
    extra: dict[str, Any] | None = None,
    root: str | None = None,
    sizes: EvalSizes = EvalSizes(),
    device: str = "auto",
    reuse: list[Path] | None = None,
) -> Path:
    """Train (or resume) and evaluate one (arm, seed); returns its ``eval.json`` (skips the work if present).
    An arm with a checkpoint is only evaluated (:func:`eval_arm`); one whose run already exists, finished, in a
    ``reuse`` study directory (the same resolved config, seed and dataset) takes that run's results."""

    run_dir = out / f"{arm.name}-s{seed}"
    result = run_dir / "eval.json"
    if result.is_file():
        return result
    if study.probe_cap is not None:
        sizes = replace(sizes, probe_cap=study.probe_cap)
    if arm.checkpoint:
        return eval_arm(study, arm, seed, run_dir, root, sizes, device)
    extra = {"train.device": device, **(extra or {})}
    if (same := same_run(study, arm, seed, extra, root, reuse)) is not None:
        return reuse_run(same, arm, result)
    cfg = arm_config(study, arm, seed, run_dir, extra, root)
    t0 = time.perf_counter()
    fit(cfg, resume=(run_dir / "checkpoints" / "last.json").is_file())
    train_s = time.perf_counter() - t0
    rows = _evaluate(run_dir / "checkpoints" / "last.json", study.dataset, root, run_dir, seed, sizes, device)
    rows += training_rows(run_dir)
    info = {
        "study": study.dataset,
        "arm": arm.name,
        "method": arm.method,
        "seed": seed,
        "overrides": {**study.settings, **arm.overrides, **extra},
        "train_seconds": round(train_s, 1),
        "source": {"checkpoint": str(run_dir / "checkpoints" / "last.json"), "dataset": study.dataset},
    }
    return write_results(rows, run_dir, info)[0]


def same_run(
    study: Study, arm: Arm, seed: int, extra: dict[str, Any], root: str | None, reuse: list[Path] | None
) -> Path | None:
    """A finished run in one of the ``reuse`` study directories whose config.yaml is exactly this arm's resolved
    config (only its own run directory differs) and whose evaluation used this study's dataset; else None."""
    for study_dir in reuse or ():
        for run in sorted(Path(study_dir).glob(f"*-s{seed}")):
            config, result = run / "config.yaml", run / "eval.json"
            if not (config.is_file() and result.is_file()):
                continue
            want = to_yaml(arm_config(study, arm, seed, run, extra, root))
            doc = json.loads(result.read_text())
            if config.read_text() == want and doc.get("source", {}).get("dataset") == study.dataset:
                return run
    return None


def reuse_run(source: Path, arm: Arm, result: Path) -> Path:
    """``result``: the eval.json of run ``source`` under this arm's name, recording where it came from (a CPU run
    is deterministic: training the same config again gives the same numbers, docs/results.md §5)."""
    doc = json.loads((source / "eval.json").read_text())
    doc.update(arm=arm.name, reused_from=str(source))
    result.parent.mkdir(parents=True, exist_ok=True)
    log.info("study: %s reuses the finished run %s (same config and seed)", arm.name, source)
    return atomic_write_json(result, doc)


def eval_arm(
    study: Study, arm: Arm, seed: int, run_dir: Path, root: str | None, sizes: EvalSizes, device: str
) -> Path:
    """Evaluate ``arm.checkpoint`` as it is (no training) with the study's evaluators and ``seed``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = _evaluate(Path(arm.checkpoint), study.dataset, root, run_dir, seed, sizes, device)
    info = {
        "study": study.dataset,
        "arm": arm.name,
        "method": arm.method,
        "seed": seed,
        "overrides": {},
        "train_seconds": 0.0,
        "evaluation_only": True,
        "source": {"checkpoint": arm.checkpoint, "dataset": study.dataset},
    }
    return write_results(rows, run_dir, info)[0]


def _evaluate(checkpoint: Path, dataset: str, root, run_dir: Path, seed: int, sizes: EvalSizes, device: str):
    """Build the run's test and train stores (no UMAP: not needed for scores) and run every evaluator."""

    stores = {}
    for split in ("test", "train"):
        job = EmbedJob(
            checkpoint, dataset, split, root, run_dir / "stores", device=device, limit=sizes.store_limit
        )
        stores[split] = open_store(build_store(job, StoreOptions(umap=False), overwrite=True))
    dev = str(resolve_device(device))
    ctx = EvalContext(
        stores["test"],
        stores["train"],
        probe_cap=sizes.probe_cap,
        n_fit=sizes.n_fit,
        n_eval=sizes.n_eval,
        seed=seed,
        device=dev,
        n_sweep=sizes.n_sweep,
    )
    return evaluate(ctx)


def run_study(
    name: str,
    seeds: list[int],
    out: Path,
    arms: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    root: str | None = None,
    sizes: EvalSizes = EvalSizes(),
    device: str = "auto",
    checkpoints: list[str | Path] | None = None,
    reuse: list[Path] | None = None,
) -> list[Path]:
    """Every (seed, arm) of study ``name``, seed-major so a partial study already has whole seeds; each of
    ``checkpoints`` adds an evaluation-only arm after the study's; runs in the ``reuse`` study directories with an
    arm's exact config are taken instead of trained again."""
    study = get_study(name)
    chosen = with_checkpoints(select_arms(study, arms), checkpoints)
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds must list non-negative integers, got {seeds}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "study.json", study_record(name, study, out, seeds, chosen, extra))
    results = []
    for seed in seeds:
        for arm in chosen:
            run_dir = out / f"{arm.name}-s{seed}"
            if (run_dir / FAILED).is_file():
                log.warning("study %s: %s seed %d diverged before; skipped (%s)", name, arm.name, seed, RETRY)
                continue
            log.info("study %s: %s seed %d", name, arm.name, seed)
            try:
                results.append(run_arm(study, arm, seed, out, extra, root, sizes, device, reuse))
            except NonFiniteLossError as e:  # recorded, reported, and the study goes on with the next arm
                atomic_write_json(run_dir / FAILED, {"arm": arm.name, "seed": seed, "reason": e.reason})
                log.warning("study %s: %s seed %d did not finish: %s", name, arm.name, seed, e.reason)
    return results


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="run a multi-seed comparison of the methods (train + evaluate every arm) and report it",
        description="`study run` trains and evaluates every arm of a study for each seed (resumable: rerun the "
        "same command to finish an interrupted study); `study report` aggregates the results into markdown "
        "tables (mean ± std over seeds) and PNG plots. Studies: "
        + "; ".join(f"{k}: {v.description}" for k, v in STUDIES.items()),
    )
    sp = p.add_subparsers(dest="study_cmd", required=True, metavar="{run,report,collect}")
    r = sp.add_parser("run", help="train and evaluate every (seed, arm); skips finished ones")
    r.add_argument("study", choices=sorted(STUDIES), help="which study")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    r.add_argument("--arms", nargs="+", default=None, help="only these arms (default: all of the study's)")
    r.add_argument("--out", type=Path, default=None, help="study directory (default: runs/study-<study>)")
    r.add_argument("--data-root", default=None, help="dataset root for file-backed datasets (cifar10)")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    r.add_argument(
        "--checkpoint",
        nargs="+",
        default=[],
        metavar="PATH",
        help="also evaluate these checkpoints (e.g. imported: checkpoints/NAME.json) with the study's evaluators "
        "and seeds, without training; each is an arm named by its file stem",
    )
    r.add_argument(
        "--reuse",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="other study directories: an arm whose exact config and seed finished there takes that run's results "
        "instead of training again (e.g. invariance_vs_equivariance's eq-* arms are transforms' essl-* arms)",
    )
    r.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a shared setting for every arm, e.g. --set optim.epochs=20 (recorded in study.json)",
    )
    r.set_defaults(func=_cmd_run)

    add_report_args(sp.add_parser("report", help="tables and plots from a study directory's eval.json files"))
    add_collect_args(
        sp.add_parser(
            "collect", help="finished training runs made elsewhere (a GPU session) as a study directory"
        )
    )


def _cmd_run(args: argparse.Namespace) -> int:

    out = args.out or Path(f"runs/study-{args.study}")
    extra = parse_overrides(args.set)
    paths = run_study(
        args.study, args.seeds, out, args.arms, extra, args.data_root, device=args.device,
        checkpoints=args.checkpoint, reuse=args.reuse,
    )  # fmt: skip
    failed = failed_arms(out)
    print(json.dumps({"study": args.study, "out": str(out), "results": len(paths), "failed": len(failed)}))
    for f in failed:
        print(f"did not finish: {f['arm']} seed {f['seed']}: {f['reason']} ({RETRY})", file=sys.stderr)
    print(f"next: python -m engine study report {out}")
    return 0
