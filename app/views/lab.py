"""Augmentation lab: augment one image, compare actual and predicted embedding displacements, sweep a family.

Sliders, ranges and sweep grids come from the families table (engine.augment.FAMILIES); random views are drawn from
the model's own training recipe; every number comes from engine.lab.image.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app import cached, ui
from engine.augment import FAMILIES, Recipe, find_family, training_recipe
from engine.core.errors import ConfigError, EquiLabError
from engine.eval.displacement import SCORED_SPACES
from engine.lab.image import SliderValues, displacement_basis, lab_views, random_values, sweep_models

CENTRE_KEYS = {"crop_cx": ("Crop centre x", "lab_cx"), "crop_cy": ("Crop centre y", "lab_cy")}


def _arrow(fig: go.Figure, start, end, colour: str, text: str) -> None:
    """An arrow from ``start`` to ``end`` (2-D points in the figure's data coordinates)."""
    fig.add_annotation(
        x=end[0],
        y=end[1],
        ax=start[0],
        ay=start[1],
        xref="x",
        yref="y",
        axref="x",
        ayref="y",
        showarrow=True,
        arrowhead=2,
        arrowcolor=colour,
        text=text,
    )


def _key(name: str) -> str:
    return f"lab_{name}"


def _sliders() -> SliderValues:
    """One widget per family (checkbox for on/off ops), three columns, plus the crop centre under the crop."""
    for (
        name,
        fam,
    ) in FAMILIES.items():  # defaults once, so values set by "Edit in the sliders" are not overridden
        st.session_state.setdefault(_key(name), bool(fam.neutral) if fam.flag else fam.neutral)
    for name, (_, key) in CENTRE_KEYS.items():
        st.session_state.setdefault(key, getattr(SliderValues(), name))
    cols = st.columns(3)
    names = list(FAMILIES)
    per = -(-len(names) // 3)
    got = {}
    for i, name in enumerate(names):
        fam, col = FAMILIES[name], cols[i // per]
        if fam.flag:
            got[name] = col.checkbox(fam.label, key=_key(name))
        else:
            got[name] = col.slider(fam.label, fam.low, fam.high, step=fam.step, key=_key(name))
        if name == "crop_scale":
            for field, (label, key) in CENTRE_KEYS.items():
                got[field] = col.slider(label, 0.0, 1.0, step=0.01, key=key)
    return SliderValues(**got)


def _to_sliders(v: SliderValues) -> None:
    """Callback: show one random view in the sliders (and switch to them)."""
    for name in FAMILIES:
        st.session_state[_key(name)] = getattr(v, name)
    for field, (_, key) in CENTRE_KEYS.items():
        st.session_state[key] = getattr(v, field)
    st.session_state["lab_mode"] = "Sliders"


def _describe(v: SliderValues) -> str:
    """The non-identity strengths of one view, e.g. "Crop scale 0.52 · Hue shift 0.31"."""
    parts = [
        fam.label if fam.flag else f"{fam.label} {getattr(v, n):.2f}"
        for n, fam in FAMILIES.items()
        if not fam.same(float(getattr(v, n)), fam.neutral)
    ]
    return " · ".join(parts) or "identity"


def _recipe_caption(r: Recipe) -> str:
    lo, hi = r.scale
    return (
        f"Sampled from this model's training recipe: crop area {lo:g}–{hi:g}, flip p={r.flip_p:g}, colour jitter "
        f"p={r.jitter_p:g} (brightness ±{r.brightness:g}, contrast ±{r.contrast:g}, saturation ±{r.saturation:g}, "
        f"hue ±{r.hue:g}), grayscale p={r.gray_p:g}, blur p={r.blur_p:g}. The sliders show each view with the "
        "image's aspect kept and the colour ops in a fixed order."
    )


st.title("Augmentation lab")
sel = ui.selection()
ref = cached.store_for(sel)
info = cached.summary(str(ref.path), ref.stamp)
space = ui.pick_space(info["spaces"], prefer=SCORED_SPACES)  # where the displacement is scored
example = st.session_state.get("example", {})

# ---------------------------------------------------------------- the image
src_col, aug_col = st.columns([1, 2])
with src_col:
    source = st.radio("Image", ["Dataset", "Upload"], horizontal=True, key="lab_source")
    image = None
    if source == "Dataset":
        n = info["n"]
        if "lab_idx" not in st.session_state:
            st.session_state["lab_idx"] = min(max(ui.qp_int("idx", 0), 0), n - 1)
        classes = ["any", *info["classes"]]
        cls = st.selectbox("Class", classes, key="lab_class")
        if st.button("Random image", key="lab_random_img"):
            pool = np.arange(n) if cls == "any" else np.flatnonzero(info["labels"] == classes.index(cls) - 1)
            rng = np.random.default_rng(st.session_state.get("lab_draws", 0))
            st.session_state["lab_draws"] = st.session_state.get("lab_draws", 0) + 1
            st.session_state["lab_idx"] = int(rng.choice(pool))
        idx = st.number_input("Index", 0, n - 1, key="lab_idx", step=1)
        ui.set_qp(idx=idx)
        image = cached.item_image(ref, int(idx))
        caption = f"#{idx} · {info['classes'][info['labels'][idx]]}"
    else:
        up = st.file_uploader("PNG / JPEG / WebP / BMP (≤ 10 MB)", key="lab_upload")
        image = ui.decode_upload(up)
        caption = up.name if up is not None else ""
    if image is None:
        st.info("Pick a dataset image or upload one.")
        st.stop()
    st.image(image, caption=caption, width=160)

# ---------------------------------------------------------------- the augmentation
model, _ = ui.load_model(sel.checkpoint)
with aug_col:
    mode = st.radio("Augmentation", ["Sliders", "Sample random (seeded)"], horizontal=True, key="lab_mode")
    if mode == "Sliders":
        values = [_sliders()]
    else:
        c1, c2 = st.columns(2)
        seed = c1.number_input("Seed", 0, 2**31 - 1, 0, key="lab_seed")
        n_views = c2.slider("Views", 1, 4, 2, key="lab_nviews")
        recipe = training_recipe(model)
        values = random_values(recipe, image.shape[:2], int(seed), n_views)
        st.caption(_recipe_caption(recipe))

try:
    res = lab_views(model, image, values, space, predictor=cached.predictor(ref, space))
except EquiLabError as e:
    ui.show_error(e)
    st.stop()
# The retrieval page can query with the current view.
st.session_state["lab_view"] = {"z": res.z[0], "space": space, "image": res.views[0], "store": str(ref.path)}

# ---------------------------------------------------------------- views and numbers
left, right = st.columns([3, 2])
with left:
    st.subheader("Views and displacements")
    st.caption(
        f"Space **{space}** · predictor: **{res.predictor}**"
        + ("" if res.predictor != "none" else " (no predictor for this model/space: cos and error are blank)")
    )
    if res.predictor == "none":
        st.caption("Fit the post-hoc displacement predictor of this store with:")
        st.code(f"python -m engine eval --store {ref.path} --displacement", language="bash")
    for i, v in enumerate(values):
        cols = st.columns([1, 1, 1])
        cols[0].image(np.transpose(res.views[i], (1, 2, 0)).clip(0, 1), caption=f"view {i + 1}", width=96)
        cols[1].metric("|Δ|", f"{res.norm[i]:.4f}")
        cols[1].metric("invariance cos", f"{res.invariance[i]:.3f}")
        cols[2].metric("cos(Δ, Δ̂)", "—" if np.isnan(res.cos[i]) else f"{res.cos[i]:.3f}")
        cols[2].metric("relative error", "—" if np.isnan(res.rel_err[i]) else f"{res.rel_err[i]:.3f}")
        if mode != "Sliders":
            cols[0].caption(_describe(v))
            cols[0].button("Edit in the sliders", key=f"lab_edit_{i}", on_click=_to_sliders, args=(v,))

with right:
    # ---------------------------------------------------------------- arrows in a linear basis
    emb = cached.embeddings(str(ref.path), ref.stamp, space)
    basis_kind = st.radio(
        "Arrow basis (linear, never UMAP)",
        ["Store PCA 1-2", "Mean displacement axis"],
        horizontal=True,
        key="lab_basis",
    )
    zoom = st.toggle("Zoom on the arrows", value=True, key="lab_zoom")
    deltas = res.actual
    if basis_kind == "Store PCA 1-2" or np.linalg.norm(deltas.mean(axis=0)) < 1e-9:
        basis = cached.pca(str(ref.path), ref.stamp, space)
    else:
        basis = displacement_basis(deltas, emb)
    cloud = basis.project(emb[:: max(1, len(emb) // 3000)])
    o = basis.project(res.z0[0])
    fig = go.Figure(
        go.Scatter(
            x=cloud[:, 0], y=cloud[:, 1], mode="markers", marker=dict(size=3, color="lightgray"), name="store"
        )
    )
    for i in range(len(res.z)):
        _arrow(fig, o, basis.project(res.z[i]), "#1f77b4", f"Δ{i + 1}")  # actual
        if res.z_hat is not None:
            _arrow(fig, o, basis.project(res.z_hat[i]), "#d62728", f"Δ̂{i + 1}")  # predicted
    fig.add_trace(
        go.Scatter(x=[o[0]], y=[o[1]], mode="markers", marker=dict(size=10, color="black"), name="original")
    )
    if zoom:  # untrained or invariant models move views very little relative to the cloud
        tips = np.vstack(
            [o[None], basis.project(res.z)] + ([basis.project(res.z_hat)] if res.z_hat is not None else [])
        )
        lo, hi = tips.min(axis=0), tips.max(axis=0)
        pad = np.maximum((hi - lo) * 0.3, 1e-6)
        fig.update_xaxes(range=[lo[0] - pad[0], hi[0] + pad[0]])
        fig.update_yaxes(range=[lo[1] - pad[1], hi[1] + pad[1]])
    fig.update_layout(
        height=380, margin=dict(l=10, r=10, t=30, b=10), title=f"{basis.name}: blue = actual, red = predicted"
    )
    st.plotly_chart(fig, key="lab_arrows")

# ---------------------------------------------------------------- neighbours of each view
k = 6
hits = cached.search(ref, space, res.z, k)
th = cached.thumbs(str(ref.path), ref.stamp)
st.subheader("Nearest neighbours of each view")
for i in range(len(res.z)):
    ids = np.asarray(hits.ids)[i]
    st.image([th[j] for j in ids], caption=[info["classes"][info["labels"][j]] for j in ids], width=56)

# ---------------------------------------------------------------- sweep
with st.expander("Sweep one augmentation family", expanded="sweep" in example):
    names = list(FAMILIES)
    try:
        want = find_family(example["sweep"]).name if "sweep" in example else names[0]
    except ConfigError:
        want = names[0]
    sweep = st.selectbox(
        "Family",
        names,
        index=names.index(want),
        format_func=lambda n: FAMILIES[n].label,
        key="lab_sweep",
    )
    all_models = st.toggle("All models at once", key="lab_sweep_all")
    if st.button("Run sweep", key="lab_sweep_run"):
        base = values[0] if mode == "Sliders" else SliderValues()
        chosen = ui.discover_models() if all_models else {sel.model: sel.checkpoint}
        models = {}
        for label, ckpt in list(chosen.items())[:6]:
            loaded = ui.load_model(ckpt, stop=False)
            if loaded is not None:
                models[label] = loaded[0]
        st.session_state["lab_sweep_rows"] = (sweep, space, sweep_models(models, image, base, sweep, space))
    if "lab_sweep_rows" in st.session_state:
        name, swept_space, curves = st.session_state["lab_sweep_rows"]
        for c in curves:
            if c.error:
                st.warning(f"No curve for {c.error}")
        c1, c2 = st.columns(2)
        for col, key, title in ((c1, "norm", "|Δ|"), (c2, "cos", "cos(Δ, Δ̂)")):
            f = go.Figure()
            for c in curves:
                if not c.error:
                    f.add_trace(
                        go.Scatter(x=c.strengths, y=getattr(c, key), mode="lines+markers", name=c.model)
                    )
            f.update_layout(
                height=300,
                title=f"{title} vs {FAMILIES[name].label} ({swept_space})",
                margin=dict(l=10, r=10, t=40, b=10),
            )
            col.plotly_chart(f, key=f"lab_sweep_{key}")
