"""``metrics.jsonl``: what the trainer logs (one JSON object per line: step records, then each epoch's record),
read back by the dashboard, the study report and the trainer's own monitors.

The reader is tolerant of live files: a run being written may end in a half line, which is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

METRICS_FILE = "metrics.jsonl"


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
