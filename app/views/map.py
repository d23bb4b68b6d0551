"""Map: UMAP / PCA of a store, coloured by label, factor, kNN-correctness or a score; select to inspect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import cached, ui
from engine.augment import FAMILIES
from engine.lab.compare import selection_ids
from engine.lab.image import default_strength, family_gain
from engine.store.projection import stratified_sample

MAX_POINTS = 20000
GRID = 48

st.title("Map")
sel = ui.selection()
ref = cached.store_for(sel)
info = cached.summary(str(ref.path), ref.stamp)
space = ui.pick_space(info["spaces"])
meta: pd.DataFrame = info["meta"]
labels = info["labels"]
n = info["n"]


AUG_COLOURS = {  # colour option -> (ItemGain field, colour-bar title)
    "displacement |Δ|": ("norm", "|Δ|"),
    "relative invariance": ("rel_invariance", "relative invariance<br>(0 = between images)"),
    "gain over the strongest baseline": ("gain", "gain in cos(Δ, Δ̂)<br>over {strongest}"),
}
BASELINE_NAMES = {
    "mean_delta": "the mean-Δ guess",
    "params_only": "parameters only",
    "image_only": "image only",
}


@st.cache_data(max_entries=16, show_spinner="Augmenting and embedding every item (once per setting)…")
def displacement_map(path: str, stamp: float, space: str, family: str, strength: float, _predictors):
    """engine.lab.image.ItemGain of every store item under one augmentation family (|Δ|, relative invariance,
    gain of the predictor over the strongest baseline)."""

    model, _ = ui.load_model(sel.checkpoint)
    images = cached.store_images(ref)
    return family_gain(model, images, family, strength, space, _predictors, cached.reference(ref, space))


c1, c2, c3 = st.columns(3)
kind = c1.radio("Projection", ["umap", "pca2"], horizontal=True, key="map_kind")
factors = [c for c in meta.columns if c not in ("id", "label", "path") and meta[c].nunique() < 10_000]
colour = c2.selectbox(
    "Colour by",
    ["label", *factors, "kNN-correctness", *AUG_COLOURS],
    key="map_colour",
)
cap = int(c3.number_input("Max points drawn", 500, MAX_POINTS, min(5000, MAX_POINTS), 500, key="map_cap"))

xy = cached.coords(ref, space, kind)
shown = stratified_sample(labels, n, cap, seed=0)
st.caption(f"Showing {len(shown):,} of {n:,} items (per-class sample); metrics use the full store.")

colour_title = colour
if colour == "label":
    values, names = labels, info["classes"]
elif colour == "kNN-correctness":
    values, names = cached.knn_correct(ref, space), None
elif colour in AUG_COLOURS:
    fams = list(FAMILIES)
    d1, d2 = st.columns(2)
    fam = d1.selectbox(
        "Augmentation",
        fams,
        index=fams.index("hue") if "hue" in fams else 0,
        format_func=lambda n: FAMILIES[n].label,
        key="map_family",
    )
    f = FAMILIES[fam]
    strength = d2.slider(
        "Strength",
        float(f.low),
        float(f.high),
        default_strength(fam),
        step=float(f.step),
        key=f"map_strength_{fam}",
    )
    model, _ = ui.load_model(sel.checkpoint)
    predictors = cached.lab_predictors(ref, space, model, sel.checkpoint)
    if predictors is None:
        st.stop()
    measured = displacement_map(str(ref.path), ref.stamp, space, fam, strength, predictors)
    field, colour_title = AUG_COLOURS[colour]
    values, names = getattr(measured, field), None
    if field == "gain":
        if measured.reason:
            st.info(f"No gain to colour by: {measured.reason}.")
        else:
            colour_title = colour_title.format(
                strongest=BASELINE_NAMES.get(measured.strongest, measured.strongest)
            )
            st.caption(
                f"Per item: cos(Δ, Δ̂) of the {predictors.method_name} minus that of the strongest model-free "
                f"guess over all items ({BASELINE_NAMES.get(measured.strongest, measured.strongest)}; mean gain "
                f"{np.nanmean(measured.gain):+.3f}). Above 0 the predictor knows something the guess does not."
            )
else:
    col = meta[colour]
    if pd.api.types.is_numeric_dtype(col) and col.nunique() > 12:
        values, names = col.to_numpy(dtype=np.float64), None
    else:
        codes, uniq = pd.factorize(col, sort=True)
        values, names = codes, [str(u) for u in uniq]

# gain is signed (diverging, centred on 0); hue and angle factors wrap around (cyclic); the rest sequential
cyclic = colour in factors and ui.is_cyclic(colour)
scale = "RdBu" if colour == "gain over the strongest baseline" else ui.CYCLIC_SCALE if cyclic else "Viridis"
fig = go.Figure()
if names is not None:  # one trace per category: legend + stable colours
    for c, name in enumerate(names):
        fig.add_trace(ui.class_points(xy, shown[values[shown] == c], name, ui.class_colour(c)))
else:
    fig.add_trace(
        ui.value_points(
            xy,
            shown,
            values[shown],
            colour,
            colour_title,
            colorscale=scale,
            cmid=0.0 if colour == "gain over the strongest baseline" else None,
        )
    )
fig.update_layout(
    height=520, margin=dict(l=10, r=10, t=10, b=10), dragmode="select", uirevision=f"{space}{kind}"
)
if names is not None:
    ui.legend_below(fig, height=560)
event = st.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=("points", "box", "lasso"))
picked = selection_ids(event.selection if event else None)

th = cached.thumbs(str(ref.path), ref.stamp)
table = meta.assign(id=np.arange(n), label=[info["classes"][c] for c in labels])
if len(picked) > 1:
    st.subheader(f"Selection: {len(picked)} items")
    first = picked[:GRID]
    st.image([th[i] for i in first], caption=[str(i) for i in first], width=56)
    if len(picked) > GRID:
        st.caption(f"First {GRID} thumbnails of {len(picked)}.")
    st.dataframe(ui.table3(table.iloc[picked]), width="stretch", hide_index=True)

st.subheader("Inspect one item")
if "map_item" not in st.session_state:
    st.session_state["map_item"] = ui.url_int("item", 0, 0, n - 1)
if len(picked) == 1 and st.session_state.get("map_last_pick") != int(picked[0]):
    st.session_state["map_item"] = st.session_state["map_last_pick"] = int(picked[0])  # a clicked point
item = int(st.number_input("Item id", 0, n - 1, key="map_item"))
ui.set_qp(item=item)
a, b = st.columns([1, 3])
a.image(th[item], caption=f"#{item} · {info['classes'][labels[item]]}", width=128)
a.dataframe(table.iloc[[item]].T.astype(str), width="stretch")
emb = cached.embeddings(str(ref.path), ref.stamp, space)
hits = cached.search(ref, space, emb[item], 8, exclude=np.array([item]))
ids = [int(i) for i in np.asarray(hits.ids)[0] if i >= 0]
scores = dict(zip(np.asarray(hits.ids)[0].tolist(), np.asarray(hits.scores)[0].tolist()))
b.caption("Nearest neighbours (cosine, full store)")
b.image(
    [th[i] for i in ids], caption=[f"{info['classes'][labels[i]]} · {scores[i]:.2f}" for i in ids], width=72
)
