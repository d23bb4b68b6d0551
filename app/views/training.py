"""Training: loss, lr and kNN curves (one unit per chart) from run directories' metrics.jsonl, refreshed while a
run writes; a pretext head's loss is drawn beside ln k (its uniform guess) and a head that sits there is named."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import ui
from engine.core.paths import UnsafePathError
from engine.lab.runs import (
    METRICS_FILE,
    at_chance,
    chance_loss,
    chart_groups,
    filled_columns,
    find_runs,
    head_losses,
    is_writing,
    read_metrics,
    x_axis,
)

st.title("Training curves")
runs = find_runs(ui.roots()["runs"])
typed = st.text_input(
    "Run directory (optional)",
    placeholder="runs/<name> — must lie inside checkpoints/, runs/ or stores/",
    key="train_path",
)
if typed:
    try:
        p = ui.resolve_path(typed, ("runs", "checkpoints", "stores"))
        if not any(ui.inside_root(p / METRICS_FILE, k) for k in ("runs", "checkpoints", "stores")):
            raise UnsafePathError(
                f"{p / METRICS_FILE} is a link pointing outside the allowed roots; refused."
            )
        if not (p / METRICS_FILE).is_file():
            raise UnsafePathError(f"{typed!r} has no {METRICS_FILE} (not a run directory).")
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
writing = any(is_writing(runs[c]) for c in chosen)
live = st.toggle("Refresh while runs are writing (every 2 s)", value=writing, key="train_live")


@st.fragment(run_every=2.0 if live else None)
def curves(chosen: list[str]) -> None:
    frames = {name: read_metrics(runs[name] / METRICS_FILE) for name in chosen}
    frames = {k: v for k, v in frames.items() if not v.empty}
    if not frames:
        st.info("The selected runs have no metrics yet.")
        return
    for run, df in frames.items():
        for flag in at_chance(df):
            st.warning(f"{run}: {flag.sentence()}.")
    cols = filled_columns(list(frames.values()))  # a column never logged with a value is not drawn or listed
    for group, names in chart_groups(cols).items():
        fig = go.Figure()
        for run, df in frames.items():
            x = x_axis(df)
            for c in names:
                if c in df:
                    d = df[[c] + ([x] if x else [])].dropna()
                    # a one-point series (a run's first record) has no line to draw: show the point
                    mode = "lines" if len(d) > 1 else "markers"
                    fig.add_trace(
                        go.Scatter(x=d[x] if x else d.index, y=d[c], mode=mode, name=f"{run} · {c}")
                    )
        for k in sorted(set(head_losses(names).values())):
            fig.add_hline(
                y=chance_loss(k),
                line_dash="dot",
                line_color="grey",
                annotation_text=f"ln {k} = {chance_loss(k):.3f}: a {k}-way head's uniform guess",
                annotation_position="top left",
            )
        fig.update_layout(
            title=group,
            height=340,
            margin=dict(l=10, r=10, t=40, b=10),
            xaxis_title=x or "row",
            yaxis_title=group,
        )
        st.plotly_chart(ui.legend_below(fig), key=f"curve_{group}")
    last = {run: df.ffill().iloc[-1].to_dict() for run, df in frames.items()}  # each column's last value
    st.caption("Last logged value of each column")
    st.dataframe(ui.table3(pd.DataFrame(last).T[cols].dropna(axis=1, how="all")), width="stretch")


if chosen:
    curves(chosen)
