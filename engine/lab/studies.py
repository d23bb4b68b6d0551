"""Study summaries for the dashboard: ``summary.json`` files written by ``python -m engine study report ... --out
docs/study-<name>`` (``{"arms", "seeds", "metrics": {arm: {"space/metric": {"mean", "std", "n"}}}}``) read into
values and tidy tables that the About page draws as interactive charts. Pure functions; a missing or unreadable
file reads as None and a missing value as "not measured", never as a number.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from engine.data import DataSpec
from engine.eval.evaluate import pretext_baselines


class Stat(NamedTuple):
    """One measure of one arm over seeds: the mean, the sample standard deviation (0 for one seed), the seeds."""

    mean: float
    std: float
    n: int

    def fmt(self, digits: int = 3) -> str:
        if self.n == 0:
            return "—"
        return f"{self.mean:.{digits}f}" + (f" ± {self.std:.{digits}f}" if self.n > 1 else "")


def noise_word(a: Stat | None, b: Stat | None) -> str:
    """ "noise" when |b − a| is at most twice the larger of the two seed standard deviations (the rule
    docs/results.md states and its findings use), "1 seed: spread unknown" with fewer than two seeds on either
    side, else "higher" or "lower" (b against a)."""
    if a is None or b is None or a.n == 0 or b.n == 0:
        return "—"
    if min(a.n, b.n) < 2:
        return "1 seed: spread unknown"
    diff = b.mean - a.mean
    return "noise" if abs(diff) <= 2.0 * max(a.std, b.std) else ("higher" if diff > 0 else "lower")


# SimCLR at its own lr and at E-SSL's doubled lr (the shapes study's control): the arms a gain is read against.
CONTROLS = ("simclr", "simclr-lr2")


def baseline_note(arms: list[str]) -> str:
    """What a study's numbers are read against, from the arms it has: the untrained network, else both
    :data:`CONTROLS`, else SimCLR alone (saying when E-SSL's doubled lr has no control), else nothing to name."""
    if "none" in arms:
        return "the `none` arm is the untrained network, the baseline every learned number is read against"
    if set(CONTROLS) <= set(arms):
        return "no untrained arm here: each arm is read against `simclr` and `simclr-lr2` (SimCLR at E-SSL's doubled lr)"
    if "simclr" in arms:
        lr = (
            " (and no `simclr-lr2`: E-SSL's lead is not separated from its doubled lr)"
            if "essl" in arms
            else ""
        )
        return f"no untrained arm here: each arm is read against `simclr`{lr}"
    return "no untrained arm in this study"


def carried_note(summary: dict[str, Any] | None) -> str:
    """Where a summary's carried arms come from (``study report --merge``): an earlier report of the same study,
    or another study's report whose arms are these arms' runs (same method, options, settings and seeds) under
    other names; "" when every arm was run into this study."""
    carried = (summary or {}).get("carried")
    if not isinstance(carried, dict) or not carried.get("arms"):
        return ""
    source = Path(str(carried.get("from", ""))).parent.name.removeprefix("study-") or "an earlier report"
    was = carried.get("was") if isinstance(carried.get("was"), dict) else {}
    arms = ", ".join(f"`{a}`" + (f" (`{was[a]}` there)" if a in was else "") for a in carried["arms"])
    return (
        f"{arms} carried from the `{source}` report: the same runs (same method, options, settings and seeds)"
    )


def rotation_ceiling(summary: dict[str, Any] | None) -> float | None:
    """The identifiability ceiling of rotation prediction on the dataset a summary records (the best accuracy its
    images allow, :func:`engine.eval.evaluate.pretext_baselines`; on ``shapes``, at uniform angles, it is chance),
    or None where none is computable (real images, a dataset the summary does not name)."""
    dataset = (summary or {}).get("dataset")
    if not isinstance(dataset, str) or not dataset:
        return None
    return pretext_baselines("rotation", DataSpec(dataset)).get("ceiling")


def read_summary(path: Path) -> dict[str, Any] | None:
    """A ``study report`` summary.json, or None when it is absent or unreadable (the page then shows blanks)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("metrics"), dict) else None


def stat(summary: dict[str, Any] | None, arm: str, key: str) -> Stat | None:
    """(mean, std, n seeds) of ``space/metric`` for ``arm`` in a summary, None when missing or NaN."""
    s = ((summary or {}).get("metrics") or {}).get(arm, {}).get(key)
    if not isinstance(s, dict) or not isinstance(s.get("mean"), int | float) or not math.isfinite(s["mean"]):
        return None
    return Stat(float(s["mean"]), float(s.get("std", 0.0)), int(s.get("n", 0)))


def fmt(s: Stat | None, spread: bool = True) -> str:
    """ "0.532 ± 0.010" (several seeds), "0.532" (one, or ``spread=False`` for a property of the task such as its
    chance level, the same for every seed), "—" (not measured)."""
    if s is None:
        return "—"
    return s.fmt() if spread else f"{s.mean:.3f}"


def measured_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the columns in which no row is measured (every cell "—"), e.g. the ceiling of a real
    dataset, which has none: a column of blanks says nothing and reads like a missing result."""
    return frame[[c for c in frame.columns if not (frame[c].astype(str) == "—").all()]]


def tidy(summary: dict[str, Any] | None, measures: dict[str, str]) -> pd.DataFrame:
    """One row per (arm, measure) that the summary holds: ``arm``, ``measure`` (the label), ``mean``, ``std``,
    ``n``, in the summary's arm order and the order of ``measures`` (label -> ``space/metric``)."""
    rows = [
        {"arm": arm, "measure": label, "mean": s[0], "std": s[1], "n": s[2]}
        for arm in (summary or {}).get("arms", [])
        for label, key in measures.items()
        if (s := stat(summary, arm, key)) is not None
    ]
    return pd.DataFrame(rows, columns=["arm", "measure", "mean", "std", "n"])


FINDINGS_OPEN = "<!-- findings: {name} -->"  # docs/results.md marks each study's findings with this pair
FINDINGS_CLOSE = "<!-- /findings -->"


def findings(markdown: str, name: str) -> str | None:
    """The findings of study ``name`` as written in docs/results.md: the text between ``<!-- findings: name -->``
    and the next ``<!-- /findings -->`` (HTML comments, invisible where the file is rendered), stripped; None when
    the study has no marked findings. One text serves the write-up and the About page, so they cannot drift."""
    start = markdown.find(FINDINGS_OPEN.format(name=name))
    if start < 0:
        return None
    start += len(FINDINGS_OPEN.format(name=name))
    end = markdown.find(FINDINGS_CLOSE, start)
    text = markdown[start : end if end >= 0 else len(markdown)].strip()
    return text or None


def marked_studies(markdown: str) -> list[str]:
    """The study names that docs/results.md marks findings for, in order of appearance."""
    head, tail = FINDINGS_OPEN.split("{name}")
    return re.findall(re.escape(head) + r"([A-Za-z0-9_]+)" + re.escape(tail), markdown)
