"""Augmentation lab: augment one image, compare actual and predicted embedding displacements, sweep a parameter."""

from __future__ import annotations

import dataclasses

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app import cached, ui
from engine.core.errors import EquiLabError
from engine.lab.image import SWEEPS, SliderValues, displacement_basis, lab_views, random_values, sweep_values


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


st.title("Augmentation lab")
sel = ui.selection()
ref = cached.store_for(sel)
info = cached.summary(str(ref.path), ref.stamp)
space = ui.pick_space(info["spaces"], prefer=("equivariant", "projector"))  # where EquiMod predicts
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
with aug_col:
    mode = st.radio("Augmentation", ["Sliders", "Sample random (seeded)"], horizontal=True, key="lab_mode")
    if mode == "Sliders":
        c1, c2, c3 = st.columns(3)
        v = SliderValues(
            crop_area=c1.slider("Crop area", 0.08, 1.0, 1.0, 0.01, key="lab_crop"),
            crop_cx=c1.slider("Crop centre x", 0.0, 1.0, 0.5, 0.01, key="lab_cx"),
            crop_cy=c1.slider("Crop centre y", 0.0, 1.0, 0.5, 0.01, key="lab_cy"),
            brightness=c2.slider("Brightness", 0.2, 1.8, 1.0, 0.05, key="lab_brightness"),
            contrast=c2.slider("Contrast", 0.2, 1.8, 1.0, 0.05, key="lab_contrast"),
            saturation=c2.slider("Saturation", 0.0, 2.0, 1.0, 0.05, key="lab_saturation"),
            hue=c3.slider("Hue shift", -0.5, 0.5, 0.0, 0.01, key="lab_hue"),
            rotation=c3.slider("Rotation (°)", -180.0, 180.0, 0.0, 5.0, key="lab_rotation"),
            blur_sigma=c3.slider("Blur σ (0 = off)", 0.0, 2.0, 0.0, 0.1, key="lab_blur"),
            flip=c1.checkbox("Horizontal flip", key="lab_flip"),
            gray=c2.checkbox("Grayscale", key="lab_gray"),
        )
        values = [v]
    else:
        c1, c2 = st.columns(2)
        seed = c1.number_input("Seed", 0, 2**31 - 1, 0, key="lab_seed")
        n_views = c2.slider("Views", 1, 4, 2, key="lab_nviews")
        values = [random_values(int(seed) + i) for i in range(n_views)]

model, _ = ui.load_model(sel.checkpoint)
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
    for i, m in enumerate(res.metrics):
        cols = st.columns([1, 1, 1])
        cols[0].image(np.transpose(res.views[i], (1, 2, 0)).clip(0, 1), caption=f"view {i + 1}", width=96)
        cols[1].metric("|Δ|", f"{m.norm:.4f}")
        cols[1].metric("invariance cos", f"{m.invariance:.3f}")
        cols[2].metric("cos(Δ, Δ̂)", "—" if np.isnan(m.cos) else f"{m.cos:.3f}")
        cols[2].metric("relative error", "—" if np.isnan(m.rel_err) else f"{m.rel_err:.3f}")

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
    deltas = res.z - res.z0
    if basis_kind == "Store PCA 1-2" or np.linalg.norm(deltas.mean(axis=0)) < 1e-9:
        basis = cached.pca(str(ref.path), ref.stamp, space)
    else:
        basis = displacement_basis(deltas, emb)
    cloud = basis.project(emb[:: max(1, len(emb) // 3000)])
    o = basis.project(res.z0)
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
with st.expander("Sweep one parameter", expanded="sweep" in example):
    names = list(SWEEPS)
    want = example.get("sweep")
    sweep = st.selectbox("Parameter", names, index=names.index(want) if want in names else 0, key="lab_sweep")
    all_models = st.toggle("All models at once", key="lab_sweep_all")
    if st.button("Run sweep", key="lab_sweep_run"):
        base = values[0] if mode == "Sliders" else SliderValues()
        grid, vals = sweep_values(dataclasses.replace(base), sweep, n=9)
        models = ui.discover_models() if all_models else {sel.model: sel.checkpoint}
        rows = []
        for label, ckpt in list(models.items())[:6]:
            loaded = ui.load_model(ckpt, stop=False)
            if loaded is None:
                continue
            mdl = loaded[0]
            try:
                r = lab_views(mdl, image, vals, space)
            except EquiLabError:
                r = lab_views(mdl, image, vals, "backbone")
            rows += [{"model": label, "x": x, "norm": m.norm, "cos": m.cos} for x, m in zip(grid, r.metrics)]
        st.session_state["lab_sweep_rows"] = (sweep, rows)
    if "lab_sweep_rows" in st.session_state:
        name, rows = st.session_state["lab_sweep_rows"]
        c1, c2 = st.columns(2)
        for col, key, title in ((c1, "norm", "|Δ|"), (c2, "cos", "cos(Δ, Δ̂)")):
            f = go.Figure()
            for label in dict.fromkeys(r["model"] for r in rows):
                pts = [r for r in rows if r["model"] == label]
                f.add_trace(
                    go.Scatter(
                        x=[r["x"] for r in pts], y=[r[key] for r in pts], mode="lines+markers", name=label
                    )
                )
            f.update_layout(height=300, title=f"{title} vs {name}", margin=dict(l=10, r=10, t=40, b=10))
            col.plotly_chart(f, key=f"lab_sweep_{key}")
