"""``metrics.jsonl``: what the trainer logs (one JSON object per line: step records, then each epoch's record),
read back by the dashboard, the study report and the trainer's own monitors.

The reader is tolerant of live files: a run being written may end in a half line, which is skipped.

:func:`at_chance` is the check that reads a pretext head's loss against its baseline: a k-way head whose
cross-entropy stays at ln k or above does no better than a uniform guess, whatever its accuracy curve seems to say.
E-SSL's grayscale head on CIFAR-10 at the doubled lr and one D4 seed of the rotation study did this
(docs/results.md); the trainer warns, the training page draws ln k beside the curve, and the study report counts
the seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.augment.pretext import PRETEXT_TASKS

METRICS_FILE = "metrics.jsonl"
EPOCH_SUFFIX = "_epoch"  # loss/<part> averaged over every step of an epoch is logged as loss_epoch/<part>
# An epoch whose mean head loss is at least (1 - CHANCE_TOL) x ln k counts as at chance (>= 0.686 for k = 2); a
# loss above ln k is no better than the uniform guess either.
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
    """A pretext head whose loss has stayed at ln k or above from epoch ``since`` through the last logged epoch
    ``last``."""

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
            f"{self.key} has stayed at ln {self.k} = {self.chance:.3f} or above from epoch {self.since} to epoch "
            f"{self.last} (last epoch's mean {self.loss:.3f}): the head's loss is no better than a uniform guess "
            f"over its {self.k} labels"
        )


def epoch_key(key: str) -> str:
    """The epoch record's name for a step part: ``loss/rotation`` -> ``loss_epoch/rotation``."""
    group, sep, name = key.partition("/")
    return f"{group}{EPOCH_SUFFIX}{sep}{name}"


def chance_loss(k: int) -> float:
    """ln k: the cross-entropy of a uniform guess over k balanced labels, the best a constant output can do on
    them."""
    return math.log(k)


def head_losses(columns) -> dict[str, int]:
    """The logged pretext-head losses among ``columns`` (``loss/<task>`` for a task of
    ``engine.augment.pretext.PRETEXT_TASKS``) and their label counts k. Every pretext head trains on balanced
    labels (each image under all k labels, or one label drawn uniformly per image), so ln k is its uniform guess."""
    out = {}
    for c in columns:
        task = str(c).removeprefix("loss/")
        if str(c).startswith("loss/") and task in PRETEXT_TASKS:
            out[str(c)] = PRETEXT_TASKS[task].n_labels
    return out


def epoch_means(df: pd.DataFrame, key: str) -> pd.Series:
    """The head loss ``key`` per epoch: the epoch records' mean over every step (``loss_epoch/<task>``), else, for
    runs logged before those existed, the mean of the epoch's logged steps (every ``train.log_every``-th)."""
    if "epoch" not in df.columns:
        return pd.Series(dtype=float)
    col = epoch_key(key)
    if col in df.columns and df[col].notna().any():
        per = df[["epoch", col]].dropna().groupby("epoch")[col].last()
    elif key in df.columns:
        per = df[["epoch", key]].dropna().groupby("epoch")[key].mean()
    else:
        return pd.Series(dtype=float)
    return per.sort_index()


def at_chance(df: pd.DataFrame, tol: float = CHANCE_TOL, epochs: int = CHANCE_EPOCHS) -> list[AtChance]:
    """The pretext heads of a metrics frame (:func:`read_metrics`) whose loss per epoch (:func:`epoch_means`) has
    been at least (1 - ``tol``) x ln k for the last ``epochs`` or more logged epochs, in column order."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    out = []
    for key, k in head_losses(df.columns).items():
        per = epoch_means(df, key)
        trailing = 0  # the epochs at chance counted back from the last one
        for at in reversed((per >= (1 - tol) * chance_loss(k)).to_list()):
            if not at:
                break
            trailing += 1
        if trailing >= epochs:
            ep = per.index.to_list()
            out.append(AtChance(key, k, int(ep[-trailing]), int(ep[-1]), float(per.iloc[-1])))
    return out


def checked_heads(df: pd.DataFrame, epochs: int = CHANCE_EPOCHS) -> list[str]:
    """The head losses of ``df`` logged over at least ``epochs`` epochs: those :func:`at_chance` can judge."""
    return [key for key in head_losses(df.columns) if len(epoch_means(df, key)) >= epochs]
