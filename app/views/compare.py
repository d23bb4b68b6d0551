"""Compare models: two stores of one dataset side by side, linked selection, neighbourhood overlap@k, probes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import cached, ui
from engine.lab.compare import neighbour_overlap, rank_changed, selection_ids
from engine.lab.display import displayable
from engine.lab.models import trained_on
from engine.store.projection import stratified_sample

MAX_POINTS = 5000
K_MAX = 50  # neighbours computed once per store; any k <= K_MAX is a slice, so moving the k slider is free


def by_dataset(labels: list[str], models: dict, dataset: str) -> list[str]:
    """``labels`` with the models trained on ``dataset`` first, then those that record no dataset, then the rest."""
    rank = {
        label: (0 if d == dataset else 1 if d is None else 2)
        for label in labels
        for d in [trained_on(models[label])]
    }
    return sorted(labels, key=lambda label: rank[label])


st.title("Compare models")
sel = ui.selection()
models = ui.discover_models()
others = by_dataset([m for m in models if m != sel.model], models, sel.dataset)
if not others:
    st.info(f"Comparison needs two checkpoints; found {len(models)}. Train another, e.g.:")
    st.code("python -m engine train --method simclr --dataset shapes", language="bash")
    st.stop()
want_b = ui.url_choice("model_b", list(models), others[0])  # model A itself: silently the first other
label_b = st.selectbox("Model B", others, index=others.index(want_b) if want_b in others else 0, key="cmp_b")
ui.set_qp(model_b=label_b)
if (trained_b := trained_on(models[label_b])) not in (None, sel.dataset):
    st.caption(
        f"Model B was trained on {trained_b}, not {sel.dataset}: its neighbourhoods here are out of domain."
    )
ref_a = cached.store_for(sel)
ref_b = cached.store_for(sel, models[label_b])
info_a = cached.summary(str(ref_a.path), ref_a.stamp)
info_b = cached.summary(str(ref_b.path), ref_b.stamp)
if info_a["n"] != info_b["n"] or not np.array_equal(info_a["labels"], info_b["labels"]):
    st.error(
        "The two stores do not hold the same items (different dataset or split); rebuild them on one dataset."
    )
    st.stop()
common = [s for s in info_a["spaces"] if s in info_b["spaces"]]
space = ui.pick_space(common, label="Embedding space (both models)")
k = int(st.slider("k for overlap@k", 5, K_MAX, 10, key="cmp_k"))
classes, labels, n = info_a["classes"], info_a["labels"], info_a["n"]

ov = neighbour_overlap(
    cached.neighbours(ref_a, space, K_MAX)[:, :k], cached.neighbours(ref_b, space, K_MAX)[:, :k]
)
st.metric(
    f"Mean overlap@{k}", f"{ov.mean():.3f}", help="share of each item's k neighbours common to both models"
)
colour = st.radio("Colour", ["label", f"overlap@{k}"], horizontal=True, key="cmp_colour")
shown = stratified_sample(labels, n, MAX_POINTS, seed=0)
st.caption(f"Showing {len(shown):,} of {n:,} items per map (per-class sample); overlap uses the full stores.")


def figure(xy: np.ndarray, highlight: np.ndarray) -> go.Figure:
    c = labels[shown] if colour == "label" else ov[shown]
    fig = go.Figure(
        go.Scattergl(
            x=xy[shown, 0],
            y=xy[shown, 1],
            customdata=shown,
            mode="markers",
            name="items",
            marker=dict(
                size=4,
                color=c,
                colorscale="Turbo" if colour == "label" else "Viridis",
                showscale=colour != "label",
            ),
            hovertemplate="id %{customdata}<extra></extra>",
        )
    )
    if len(
        highlight
    ):  # linked selection: the other map's picks drawn on top (no customdata: not selectable ids)
        fig.add_trace(
            go.Scattergl(
                x=xy[highlight, 0],
                y=xy[highlight, 1],
                mode="markers",
                name="selected",
                marker=dict(size=9, color="rgba(0,0,0,0)", line=dict(width=2, color="black")),
            )
        )
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), showlegend=False, dragmode="select")
    return fig


prev = st.session_state.get("cmp_sel", {"a": np.zeros(0, np.int64), "b": np.zeros(0, np.int64)})
ca, cb = st.columns(2)
with ca:
    st.caption(f"A: {sel.model}")
    xy_a = cached.coords(ref_a, space, "umap")
    ev_a = st.plotly_chart(
        figure(xy_a, prev["b"]), key="cmp_map_a", on_select="rerun", selection_mode=("box", "lasso", "points")
    )
with cb:
    st.caption(f"B: {label_b}")
    xy_b = cached.coords(ref_b, space, "umap")
    ev_b = st.plotly_chart(
        figure(xy_b, prev["a"]), key="cmp_map_b", on_select="rerun", selection_mode=("box", "lasso", "points")
    )
now = {"a": selection_ids(ev_a.selection), "b": selection_ids(ev_b.selection)}
if any(not np.array_equal(now[s], prev[s]) for s in "ab"):
    st.session_state["cmp_sel"] = now
    st.rerun()  # re-render both maps with the other side's highlight
picked = np.union1d(now["a"], now["b"])
if len(picked):
    st.write(f"{len(picked)} selected; their mean overlap@{k}: {ov[picked].mean():.3f}")

st.subheader("Neighbourhoods that changed most")
rank = rank_changed(ov, top=20)
th = cached.thumbs(str(ref_a.path), ref_a.stamp)
st.dataframe(
    pd.DataFrame(
        {"id": rank.ids, "label": [classes[labels[i]] for i in rank.ids], f"overlap@{k}": rank.overlap}
    ),
    hide_index=True,
    width="stretch",
    height=220,
)

st.subheader("Same query, both models")
q = int(st.number_input("Query id", 0, n - 1, int(rank.ids[0]), key="cmp_q"))
for ref, name in ((ref_a, sel.model), (ref_b, label_b)):
    emb = cached.embeddings(str(ref.path), ref.stamp, space)
    ids = [int(i) for i in np.asarray(cached.search(ref, space, emb[q], 8, exclude=np.array([q])).ids)[0]]
    st.image(
        [displayable(th[q])] + [displayable(th[i]) for i in ids],
        caption=[f"query ({name})"] + [classes[labels[i]] for i in ids],
        width=64,
    )

st.subheader("Per-factor probes")
st.caption(
    f"Ridge R² of each shapes factor from the {space} space (test split; from eval.json beside each store)."
)

rows = []
for ref, name in ((ref_a, sel.model), (ref_b, label_b)):
    got = cached.probes(ref, space)
    if got is None:
        st.info(f"No probe results beside the {name} store yet. Compute them with:")
        st.code(f"python -m engine eval --store {ref.path} --only factors", language="bash")
        continue
    rows += [{"model": name, **r} for r in got]
if rows:
    df = pd.DataFrame(rows)
    fig = go.Figure([go.Bar(x=g["factor"], y=g["r2"], name=m) for m, g in df.groupby("model", sort=False)])
    fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="R²")
    st.plotly_chart(fig, key="cmp_probes")
