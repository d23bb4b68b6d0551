"""``metrics.jsonl``: what the trainer logs (one JSON object per line: step records, then each epoch's record),
read back by the dashboard, the study report and the trainer's own monitors.

The reader is tolerant of live files: a run being written may end in a half line, which is skipped.

:func:`at_chance` is the check that reads a pretext head's loss against its baseline: a k-way head whose
cross-entropy sits at ln k predicts a uniform guess, whatever its accuracy curve seems to say. E-SSL's grayscale
head on CIFAR-10 and one D4 seed of the rotation study did this (docs/results.md); the trainer warns, the training
page draws ln k beside the curve, and the study report counts the seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.augment.pretext import PRETEXT_TASKS

METRICS_FILE = "metrics.jsonl"
# An epoch whose mean head loss lies within this fraction of ln k counts as at chance (1%: 0.686-0.700 for k = 2).
CHANCE_TOL = 0.01
# Trailing epochs at chance before a head is flagged (one epoch near ln k is what a slow start looks like).
CHANCE_EPOCHS = 2


def read_metrics(path: Path) -> pd.DataFrame:
    """One row per JSON object line of a metrics.jsonl (numeric values only; unparsable lines are skipped)."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                rows.append(
                    {k: v for k, v in rec.items() if isinstance(v, int | float) and not isinstance(v, bool)}
                )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class AtChance:
    """A pretext head whose loss has sat at ln k from epoch ``since`` through the last logged epoch ``last``."""

    key: str
    k: int
    since: int
    last: int
    loss: float

    @property
    def chance(self) -> float:
        return chance_loss(self.k)

    def sentence(self) -> str:
        """One line for a log or a page."""
        return (
            f"{self.key} has sat at ln {self.k} = {self.chance:.3f} (a uniform guess over {self.k} labels) from "
            f"epoch {self.since} to epoch {self.last} (last epoch's mean {self.loss:.3f}): the head predicts its "
            "task no better than chance"
        )


def chance_loss(k: int) -> float:
    """ln k: the cross-entropy of a uniform guess over k balanced labels (and of any constant output's softmax
    that is uniform; a constant output can do no better on balanced labels)."""
    return math.log(k)


def head_losses(columns) -> dict[str, int]:
    """The logged pretext-head losses among ``columns`` (``loss/<task>`` for a task of
    ``engine.augment.pretext.PRETEXT_TASKS``) and their label counts k. Every pretext head trains on balanced
    labels (each image under all k labels, or k drawn uniformly), so ln k is its uniform guess."""
    out = {}
    for c in columns:
        task = str(c).removeprefix("loss/")
        if str(c).startswith("loss/") and task in PRETEXT_TASKS:
            out[str(c)] = PRETEXT_TASKS[task].n_labels
    return out


def at_chance(df: pd.DataFrame, tol: float = CHANCE_TOL, epochs: int = CHANCE_EPOCHS) -> list[AtChance]:
    """The pretext heads of a metrics frame (:func:`read_metrics`) whose per-epoch mean loss has been within
    ``tol`` x ln k of ln k for the last ``epochs`` or more logged epochs, oldest such epoch first."""
    if df.empty or "epoch" not in df.columns:
        return []
    out = []
    for key, k in head_losses(df.columns).items():
        per = df[["epoch", key]].dropna().groupby("epoch")[key].mean().sort_index()
        near = ((per - chance_loss(k)).abs() <= tol * chance_loss(k)).to_list()
        trailing = len(near) - next((i + 1 for i in range(len(near) - 1, -1, -1) if not near[i]), 0)
        if trailing >= epochs:
            ep = per.index.to_list()
            out.append(AtChance(key, k, int(ep[-trailing]), int(ep[-1]), float(per.iloc[-1])))
    return out
