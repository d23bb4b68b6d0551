"""Map: UMAP / PCA of a store, coloured by label, factor, neighbours' label agreement or a score; select to inspect.

A view holding at most "Max points drawn" items draws them one by one; a larger one is a density image of EVERY
item in it (engine.store.density, datashader) with per-cell hover. Box and lasso selections are computed over the
full coordinate set (engine.store.select), so they count every item inside, drawn or not; "Zoom to selection"
re-renders the selected region, down to individual points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go
import streamlit as st

from app import cached, ui
from engine.augment import FAMILIES
from engine.lab.compare import same_label_chance, selection_ids
from engine.lab.gainmaps import DEFAULT_FAMILY, MAX_ITEMS, ensure_gain
from engine.lab.image import default_strength
from engine.store.density import density_map
from engine.store.format import open_store
from engine.store.select import box_ids, extent, region_bounds, region_ids

MAX_POINTS = 20000
GRID = 48
TABLE_ROWS = 1000  # rows of a selection shown in its table (counts cover all of it)
TRANSPARENT = [[0.0, "rgba(0,0,0,0)"], [1.0, "rgba(0,0,0,0)"]]

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
NEIGHBOUR_K = 10
NEIGHBOURS = f"same label among {NEIGHBOUR_K}-NN"  # the colour option of cached.knn_correct
BASELINE_NAMES = {
    "mean_delta": "the mean-Δ guess",
    "params_only": "parameters only",
    "image_only": "image only",
}


@st.cache_data(max_entries=8, show_spinner=False)
def density(xy: np.ndarray, view, codes, colours, values, cmap, span):
    """engine.store.density.density_map of the view (cached per view and colouring)."""
    return density_map(xy, *view, codes=codes, colours=colours, values=values, cmap=cmap, span=span)


@st.cache_data(max_entries=32, show_spinner=False)
def vector(path: str, stamp: float, space: str, item: int) -> np.ndarray:
    """One stored embedding, read from the memory-mapped space (the page never loads all vectors)."""
    return np.array(open_store(path, verify=False).embeddings(space)[item], dtype=np.float32)


@st.cache_data(max_entries=16, show_spinner="Augmenting and embedding every item (once per setting)…")
def displacement_map(path: str, stamp: float, space: str, family: str, strength: float, _predictors):
    """engine.lab.image.ItemGain of every store item under one augmentation family (|Δ|, relative invariance,
    gain of the predictor over the strongest baseline): read from beside the store (engine.lab.gainmaps), or
    computed once per setting."""

    model, _ = ui.load_model(sel.checkpoint)
    return ensure_gain(open_store(path, verify=False), model, family, strength, space, _predictors)


c1, c2, c3 = st.columns(3)
kind = c1.radio("Projection", ["umap", "pca2"], horizontal=True, key="map_kind")
factors = [
    c
    for c in meta.columns
    if c not in ("id", "label", "path") and (meta[c].dtype.kind == "f" or meta[c].nunique() < 10_000)
]
heavy = [NEIGHBOURS, *AUG_COLOURS] if n <= MAX_ITEMS else []
colour = c2.selectbox("Colour by", ["label", *factors, *heavy], key="map_colour")
if not heavy:
    st.caption(
        f"Neighbour and augmentation colourings compute over every item: offered up to {MAX_ITEMS:,} items."
    )
cap = int(c3.number_input("Max points drawn", 100, MAX_POINTS, min(5000, MAX_POINTS), 100, key="map_cap"))

xy = cached.coords(ref, space, kind)
view_key = f"map_view|{ref.path}|{space}|{kind}"
full_view = extent(xy)
view = st.session_state.get(view_key) or full_view
in_view = box_ids(xy, *view)
as_points = len(in_view) <= cap
if as_points:
    shown = in_view
    st.caption(f"Showing {len(shown):,} of {n:,} items; metrics use the full store.")
else:
    shown = np.zeros(0, np.int64)
    st.caption(
        f"Showing all {len(in_view):,} items in view (of {n:,}) as a density image; hover a cell for its count, "
        f"box/lasso selects over every item, zoom to a selection to see points (≤ {cap:,} in view)."
    )

colour_title = colour
if colour == "label":
    values, names = labels, info["classes"]
elif colour == NEIGHBOURS:
    values, names = cached.knn_correct(ref, space, NEIGHBOUR_K), None
    colour_title = f"share of {NEIGHBOUR_K}-NN<br>with its label"
    st.caption(
        f"Per item: the share of its {NEIGHBOUR_K} nearest neighbours (cosine, among the store's other items) that "
        f"have its label; mean {np.mean(values):.3f}, against {same_label_chance(labels):.3f} for {NEIGHBOUR_K} "
        "items drawn at random."
    )
elif colour in AUG_COLOURS:
    fams = list(FAMILIES)
    d1, d2 = st.columns(2)
    fam = d1.selectbox(
        "Augmentation",
        fams,
        index=fams.index(DEFAULT_FAMILY) if DEFAULT_FAMILY in fams else 0,
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
            colour_title = "gain (undefined)"
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
diverging = colour == "gain over the strongest baseline"
fig = go.Figure()
if not as_points:  # every item in view, as an image under the axes; hover cells on top
    if names is not None:
        dm = density(
            xy, view, np.asarray(values), [ui.class_colour(c) for c in range(len(names))], None, None, None
        )
        hover = np.where(dm.top >= 0, np.asarray(names, dtype=object)[np.maximum(dm.top, 0)], "")
        fmt = "%{z:,} items here<br>most: %{text}<extra></extra>"
    else:
        v = np.asarray(values, np.float64)
        lim = float(np.nanmax(np.abs(v))) if diverging and np.isfinite(v).any() else None
        span = (-lim, lim) if lim else None
        cmap = pc.sample_colorscale(pc.get_colorscale(scale), 64)
        dm = density(xy, view, None, None, v, cmap, span)
        hover = np.vectorize(lambda m: "" if np.isnan(m) else f"{m:.3g}")(dm.mean)
        fmt = "%{z:,} items here<br>mean " + colour + ": %{text}<extra></extra>"
    (x0, x1), (y0, y1) = dm.x_range, dm.y_range
    fig.add_layout_image(
        source=dm.image, xref="x", yref="y", x=x0, y=y1, sizex=x1 - x0, sizey=y1 - y0, sizing="stretch",
        layer="below",
    )  # fmt: skip
    fig.add_trace(
        go.Heatmap(
            z=np.where(dm.counts > 0, dm.counts, np.nan),
            x=dm.cell_x,
            y=dm.cell_y,
            text=hover,
            hovertemplate=fmt,
            colorscale=TRANSPARENT,
            showscale=False,
            hoverongaps=False,
            name="density",
        )
    )
    if names is not None:  # legend entries only
        for c, name in enumerate(names):
            fig.add_trace(
                go.Scattergl(
                    x=[None], y=[None], mode="markers", name=name, marker=dict(color=ui.class_colour(c))
                )
            )
    elif ui.any_defined(values):  # the colour bar only (none over undefined values)
        lo, hi = span or (float(np.nanmin(values)), float(np.nanmax(values)))
        bar = dict(title=dict(text=colour_title, side="right"))
        fig.add_trace(
            go.Scattergl(
                x=[None], y=[None], mode="markers", name=colour, showlegend=False,
                marker=dict(color=[lo], colorscale=scale, cmin=lo, cmax=hi, showscale=True, colorbar=bar),
            )
        )  # fmt: skip
    fig.update_xaxes(range=[x0, x1])
    fig.update_yaxes(range=[y0, y1])
elif names is not None:  # one trace per category: legend + stable colours
    for c, name in enumerate(names):
        fig.add_trace(ui.class_points(xy, shown[values[shown] == c], name, ui.class_colour(c)))
else:
    fig.add_trace(
        ui.value_points(
            xy, shown, values[shown], colour, colour_title, colorscale=scale, cmid=0.0 if diverging else None
        )
    )
if view != full_view:
    fig.update_xaxes(range=list(view[0]))
    fig.update_yaxes(range=list(view[1]))
fig.update_layout(
    height=520, margin=dict(l=10, r=10, t=10, b=10), dragmode="select", uirevision=f"{space}{kind}{view}"
)
if names is not None:
    ui.legend_below(fig, height=560)
chart_key = f"map_chart_{abs(hash((space, kind, view))) % 10**8}" if view != full_view else "map_chart"
event = st.plotly_chart(fig, key=chart_key, on_select="rerun", selection_mode=("points", "box", "lasso"))
region = region_ids(xy, event.selection if event else None)
picked = region if region is not None else selection_ids(event.selection if event else None)

z1, z2 = st.columns(2)
bounds = region_bounds(event.selection if event else None)
if z1.button("Zoom to selection", disabled=bounds is None, key="map_zoom"):
    st.session_state[view_key] = bounds
    st.rerun()
if z2.button("Reset zoom", disabled=view == full_view, key="map_unzoom"):
    st.session_state.pop(view_key, None)
    st.rerun()

th = cached.thumbs(str(ref.path), ref.stamp)
classes = np.asarray(info["classes"], dtype=object)


def rows(ids: np.ndarray) -> pd.DataFrame:
    """The table rows of items ``ids`` (built for those rows only: a store may hold a million)."""
    return meta.iloc[ids].assign(id=ids, label=classes[labels[ids]])


if len(picked) > 1:
    st.subheader(f"Selection: {len(picked):,} items")
    per = np.bincount(labels[picked], minlength=len(classes))
    st.caption(" · ".join(f"{classes[c]} {k:,}" for c, k in enumerate(per) if k))
    grid = picked if len(picked) <= GRID else picked[np.linspace(0, len(picked) - 1, GRID).astype(int)]
    ui.thumb_grid([th[i] for i in grid], [str(i) for i in grid], width=56)
    if len(picked) > GRID:
        st.caption(f"{GRID} thumbnails of {len(picked):,}, evenly spaced by id.")
    st.dataframe(ui.table3(rows(picked[:TABLE_ROWS])), width="stretch", hide_index=True)
    if len(picked) > TABLE_ROWS:
        st.caption(f"First {TABLE_ROWS:,} rows of {len(picked):,}.")

st.subheader("Inspect one item")
if "map_item" not in st.session_state:
    st.session_state["map_item"] = ui.url_int("item", 0, 0, n - 1)
if len(picked) == 1 and st.session_state.get("map_last_pick") != int(picked[0]):
    st.session_state["map_item"] = st.session_state["map_last_pick"] = int(picked[0])  # a clicked point
item = int(st.number_input("Item id", 0, n - 1, key="map_item"))
ui.set_qp(item=item)
a, b = st.columns([1, 3])
a.image(th[item], caption=f"#{item} · {info['classes'][labels[item]]}", width=128)
a.dataframe(rows(np.array([item])).T.astype(str), width="stretch")
hits = cached.search(ref, space, vector(str(ref.path), ref.stamp, space, item), 8, exclude=np.array([item]))
ids = [int(i) for i in np.asarray(hits.ids)[0] if i >= 0]
scores = dict(zip(np.asarray(hits.ids)[0].tolist(), np.asarray(hits.scores)[0].tolist()))
b.caption("Nearest neighbours (cosine, full store)")
b.image(
    [th[i] for i in ids], caption=[f"{info['classes'][labels[i]]} · {scores[i]:.2f}" for i in ids], width=72
)
