"""Training: loss, lr and kNN curves from run directories' metrics.jsonl, refreshed while a run writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import ui
from engine.core.paths import UnsafePathError

MAX_RUNS = 200


def find_runs() -> dict[str, Path]:
    """Run directories (holding metrics.jsonl) under the runs/ root: label -> dir."""
    base = ui.roots()["runs"]
    if not base.is_dir():
        return {}
    found = [p for p in base.glob("**/metrics.jsonl") if ui.inside_root(p, "runs")]  # no symlinks out
    found = sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:MAX_RUNS]
    return {str(p.parent.relative_to(base)) or ".": p.parent for p in found}


def read_metrics(path: Path) -> pd.DataFrame:
    """One row per JSON line (numbers only); a half-written last line of a live run is skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
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


def x_axis(df: pd.DataFrame) -> str | None:
    return next((c for c in ("step", "global_step", "epoch") if c in df.columns), None)


def curve_groups(columns: list[str]) -> dict[str, list[str]]:
    """Which columns go in which chart: losses, learning rate, kNN / accuracy; the rest under 'other'."""
    groups: dict[str, list[str]] = {"loss": [], "lr": [], "knn / accuracy": [], "other": []}
    for c in columns:
        lc = c.lower()
        key = (
            "loss"
            if "loss" in lc
            else "lr"
            if lc in ("lr", "learning_rate") or lc.startswith("lr/")
            else "knn / accuracy"
            if ("knn" in lc or "acc" in lc)
            else "other"
        )
        groups[key].append(c)
    return {k: v for k, v in groups.items() if v}


st.title("Training curves")
runs = find_runs()
typed = st.text_input(
    "Run directory (optional)",
    placeholder="runs/<name> — must lie inside checkpoints/, runs/ or stores/",
    key="train_path",
)
if typed:
    try:
        p = ui.resolve_path(typed, ("runs", "checkpoints", "stores"))
        if not any(ui.inside_root(p / "metrics.jsonl", k) for k in ("runs", "checkpoints", "stores")):
            raise UnsafePathError(
                f"{p / 'metrics.jsonl'} is a link pointing outside the allowed roots; refused."
            )
        if not (p / "metrics.jsonl").is_file():
            raise UnsafePathError(f"{typed!r} has no metrics.jsonl (not a run directory).")
        runs = {typed: p, **runs}
    except UnsafePathError as e:
        st.error(f"{e} (allowed roots: {', '.join(str(r) for r in ui.roots().values())})")
if not runs:
    st.info(f"No runs with a metrics.jsonl under {ui.roots()['runs']}. Start one:")
    st.code(
        "python -m engine train --method equimod --dataset shapes --out runs/equimod-shapes", language="bash"
    )
    st.stop()

chosen = st.multiselect("Runs (overlay)", list(runs), default=list(runs)[:1], key="train_runs")
writing = any(time.time() - (runs[c] / "metrics.jsonl").stat().st_mtime < 120 for c in chosen)
live = st.toggle("Refresh while runs are writing (every 2 s)", value=writing, key="train_live")


@st.fragment(run_every=2.0 if live else None)
def curves(chosen: list[str]) -> None:
    frames = {name: read_metrics(runs[name] / "metrics.jsonl") for name in chosen}
    frames = {k: v for k, v in frames.items() if not v.empty}
    if not frames:
        st.info("The selected runs have no metrics yet.")
        return
    cols = sorted(
        {c for df in frames.values() for c in df.columns} - {"step", "global_step", "epoch", "time"}
    )
    for group, names in curve_groups(cols).items():
        fig = go.Figure()
        for run, df in frames.items():
            x = x_axis(df)
            for c in names:
                if c in df:
                    d = df[[c] + ([x] if x else [])].dropna()
                    fig.add_trace(
                        go.Scatter(x=d[x] if x else d.index, y=d[c], mode="lines", name=f"{run} · {c}")
                    )
        fig.update_layout(
            title=group, height=300, margin=dict(l=10, r=10, t=40, b=10), xaxis_title=x or "row"
        )
        st.plotly_chart(fig, key=f"curve_{group}")
    last = {run: df.iloc[-1].to_dict() for run, df in frames.items()}
    st.caption("Last logged values")
    st.dataframe(pd.DataFrame(last).T, width="stretch")


if chosen:
    curves(chosen)
