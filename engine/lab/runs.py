"""Run logs for the dashboard: training runs' ``metrics.jsonl`` and the ``eval.json`` an evaluation writes.

Readers are tolerant of live files: a run being written may end in a half line, which is skipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from engine.core.paths import is_inside

# The metrics.jsonl reader and its head check are re-exported: the app reads runs through engine.lab (it never
# imports engine.train)
from engine.train.metrics import METRICS_FILE
from engine.train.metrics import at_chance as at_chance
from engine.train.metrics import chance_loss as chance_loss
from engine.train.metrics import head_losses as head_losses
from engine.train.metrics import read_metrics as read_metrics

EVAL_FILE = "eval.json"
X_COLUMNS = ("step", "global_step", "epoch")  # preferred x axis first
NOT_CURVES = frozenset({*X_COLUMNS, "time"})


def find_runs(root: Path, limit: int = 200) -> dict[str, Path]:
    """Run directories (holding metrics.jsonl) under ``root``: label (path relative to root) -> directory.

    Newest first, at most ``limit``; a metrics file reached through a symlink pointing outside ``root`` is skipped.
    """
    root = Path(root)
    if not root.is_dir():
        return {}
    found = [p for p in root.glob(f"**/{METRICS_FILE}") if is_inside(p, root)]
    found = sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:limit]
    return {str(p.parent.relative_to(root)) or ".": p.parent for p in found}


def is_writing(run_dir: Path, within_s: float = 120.0, now: float | None = None) -> bool:
    """True when the run's metrics.jsonl was written in the last ``within_s`` seconds."""
    f = Path(run_dir) / METRICS_FILE
    try:
        mtime = f.stat().st_mtime
    except OSError:
        return False
    return (time.time() if now is None else now) - mtime < within_s


def x_axis(df: pd.DataFrame) -> str | None:
    """The column to plot curves against (step, else global_step, else epoch), or None."""
    return next((c for c in X_COLUMNS if c in df.columns), None)


def curve_groups(columns: list[str]) -> dict[str, list[str]]:
    """Which columns go in which chart: losses, learning rate, kNN / accuracy; the rest under 'other'."""
    groups: dict[str, list[str]] = {"loss": [], "lr": [], "knn / accuracy": [], "other": []}
    for c in columns:
        if c in NOT_CURVES:
            continue
        lc = c.lower()
        if "loss" in lc:
            key = "loss"
        elif lc in ("lr", "learning_rate") or lc.startswith("lr/"):
            key = "lr"
        elif "knn" in lc or "acc" in lc:
            key = "knn / accuracy"
        else:
            key = "other"
        groups[key].append(c)
    return {k: v for k, v in groups.items() if v}


def chart_groups(columns: list[str]) -> dict[str, list[str]]:
    """:func:`curve_groups` with each 'other' column in a chart of its own: one chart holds one unit (losses,
    learning rates, accuracies in [0, 1]), so no curve is flattened by another's scale."""
    groups = curve_groups(columns)
    other = groups.pop("other", [])
    return {**groups, **{c: [c] for c in other}}


def filled_columns(frames: list[pd.DataFrame]) -> list[str]:
    """Sorted columns holding at least one finite value in any of ``frames`` (empty ones are hidden)."""
    keep = set()
    for df in frames:
        num = df.apply(pd.to_numeric, errors="coerce")
        keep |= {
            c
            for c in num.columns
            if num[c].replace([float("inf"), float("-inf")], float("nan")).notna().any()
        }
    return sorted(keep)


def read_eval(store_dir: Path) -> list[dict[str, Any]] | None:
    """The result rows of ``<store_dir>/eval.json`` (evaluator, space, metric, value); None when there is none
    or it is unreadable."""
    try:
        doc = json.loads((Path(store_dir) / EVAL_FILE).read_text())
    except (OSError, ValueError):
        return None
    rows = doc.get("results") if isinstance(doc, dict) else None
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else None


def factor_probes(rows: list[dict[str, Any]], space: str) -> list[dict[str, Any]]:
    """Per-factor probe R² of ``space`` from eval rows: [{"factor": name, "r2": value}] in file order.

    Only the shapes generator's factors (``r2_<factor>``), the set engine.lab.compare.probe_factors computes on
    the page: the factors evaluator's image-colour R² (``r2_image_*``) and its colour-class accuracy and chance
    (``*_acc``, ``*_chance``) are other measures, on other scales."""
    out = []
    for r in rows:
        if r.get("evaluator") != "factors" or r.get("space") != space:
            continue
        metric = str(r.get("metric", ""))
        if not metric.startswith("r2_") or metric.startswith("r2_image_"):
            continue
        try:
            out.append({"factor": str(r["metric"]).removeprefix("r2_"), "r2": float(r["value"])})
        except (KeyError, TypeError, ValueError):
            continue
    return out
