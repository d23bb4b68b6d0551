"""Augmentation lab: augment one image, compare actual and predicted embedding displacements, sweep a family.

Sliders, ranges and sweep grids come from the families table (engine.augment.FAMILIES); random views are drawn from
the model's own training recipe; every number comes from engine.lab.image.
"""

from __future__ import annotations

import contextlib

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app import cached, ui
from engine.augment import FAMILIES, Recipe, find_family, training_recipe
from engine.core.errors import ConfigError, EquiLabError
from engine.eval import measures as M
from engine.eval.displacement import SCORED_SPACES
from engine.lab.display import displayable
from engine.lab.image import SliderValues, displacement_basis, lab_predictions, random_values, sweep_models
from engine.lab.pretext import head_prediction, rotation_label

SLIDER_HELP = {  # conventions a number on the page depends on
    "rotation": "Counter-clockwise about the centre, bilinear, same size, zero fill: corners the turned image "
    "leaves empty are black (torchvision v2 rotate with its default fill=None, not fill=0).",
}

CENTRE_KEYS = {"crop_cx": ("Crop centre x", "lab_cx"), "crop_cy": ("Crop centre y", "lab_cy")}


# How each displacement is drawn: the actual one, the model's (or post-hoc) prediction and the two model-free guesses.
STYLE: dict[str, tuple[str, str, str]] = {  # name -> (legend label, colour, dash)
    "actual": ("actual Δ", "#1f4e9e", "solid"),
    M.METHOD: ("prediction Δ̂", "#d62728", "solid"),
    "mean_delta": ("guess: mean Δ of the family/strength", "#ff9900", "dash"),
    "params_only": ("guess: from the parameters only", "#2ca02c", "dot"),
}
GUESS_LABELS = {"mean_delta": "cos, mean-Δ guess", "params_only": "cos, params-only"}
GUESS_HELP = {
    "mean_delta": "cos(Δ, the mean Δ of the fit views of this family at the nearest fitted strength): no image, "
    "no predictor",
    "params_only": "cos(Δ, a ridge from the augmentation parameters alone): ignores the image",
}
RANK = {"actual": 1, M.METHOD: 2, "mean_delta": 3, "params_only": 4}  # legend order
SHORT = {"mean_delta": "mean-Δ", "params_only": "parameters-only"}


def _arrows(fig: go.Figure, name: str, start: np.ndarray, tips: list[np.ndarray], texts: list[str]) -> None:
    """One legend entry ``name`` (STYLE) holding an arrow from ``start`` to every tip (2-D data coordinates)."""
    if not tips:
        return
    label, colour, dash = STYLE[name]
    xs, ys, sym, size, txt = [], [], [], [], []
    for tip, t in zip(tips, texts, strict=True):
        xs += [start[0], tip[0], None]
        ys += [start[1], tip[1], None]
        sym += ["circle", "arrow", "circle"]
        size += [0, 13, 0]
        txt += ["", t, ""]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines+markers+text",
            name=label,
            line=dict(color=colour, dash=dash, width=2.5 if name == "actual" else 2),
            marker=dict(symbol=sym, size=size, angleref="previous", color=colour),
            text=txt,
            textposition="top right",
            legendrank=RANK[name],
            textfont=dict(color=colour),
            hoverinfo="name",
        )
    )


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if not np.isfinite(x) else f"{x:.{digits}f}"


def _verdict(res, i: int) -> str:
    """One line: does the prediction of view ``i`` beat both model-free guesses shown? (The map's gain is over the
    strongest of all baselines, the image-only ridge too.)"""
    if not res.moved(i):
        return "No displacement: this view embeds exactly as the original (Δ = 0), so there is nothing to predict."
    if res.not_encoded[i]:
        fams = ", ".join(FAMILIES[n].label for n in res.not_encoded[i])
        return (
            f"{fams}: not encoded by the 15-d parameter vector, so no predictor knows it was applied (no prediction "
            "arrow); only the mean displacement of the family and strength is a guess."
        )
    if not res.cos:
        return ""
    method = res.cos[M.METHOD][i]
    guesses = {k: res.cos[k][i] for k in GUESS_LABELS if np.isfinite(res.cos[k][i])}
    if not np.isfinite(method) or not guesses:
        return ""
    best = max(guesses, key=guesses.get)
    gain = method - guesses[best]
    word = "beats" if gain > 0 else "falls short of"
    return (
        f"The prediction {word} the better of the two model-free guesses shown ({SHORT[best]}) by {abs(gain):.3f} "
        "in cos(Δ, Δ̂)."
    )


def _guess_help(name: str, group) -> str:
    """The guess's help, saying which mean displacement the mean-Δ guess of this view really is."""
    if name != "mean_delta":
        return GUESS_HELP[name]
    if group is None:
        return (
            "cos(Δ, the mean Δ of all the fit views): this view moves several families (or none fitted), so there "
            "is no one family and strength to take the mean of; no image, no predictor"
        )
    family, strength = group
    return (
        f"cos(Δ, the mean Δ of the fit views of {FAMILIES[family].label} at {strength:g}, the fitted strength "
        "nearest this view's): no image, no predictor"
    )


def _key(name: str) -> str:
    return f"lab_{name}"


def _sliders() -> SliderValues:
    """One widget per family (checkbox for on/off ops), three columns, plus the crop centre under the crop.

    The values live in ``lab_values`` (a plain session key) as well as in the widgets: Streamlit drops a widget's
    state in a run that does not draw it (Upload with no file yet stops before the sliders), and a widget that
    comes back without state is created from ``lab_values`` via ``value=`` so the browser shows what the server
    computes with. A widget that still has state (or was set by "Edit in the sliders") is created from its key."""
    kept = st.session_state.setdefault("lab_values", {})
    cols = st.columns(3)
    names = list(FAMILIES)
    per = -(-len(names) // 3)
    got = {}

    def start(key: str, default):
        return {} if key in st.session_state else {"value": kept.get(key, default)}

    for i, name in enumerate(names):
        fam, col, key = FAMILIES[name], cols[i // per], _key(name)
        if fam.flag:
            got[name] = col.checkbox(fam.label, key=key, **start(key, bool(fam.neutral)))
        else:
            got[name] = col.slider(
                fam.label, fam.low, fam.high, step=fam.step, key=key, help=SLIDER_HELP.get(name),
                **start(key, fam.neutral),
            )  # fmt: skip
        kept[key] = got[name]
        if name == "crop_scale":
            for field, (label, ckey) in CENTRE_KEYS.items():
                got[field] = col.slider(
                    label, 0.0, 1.0, step=0.01, key=ckey, **start(ckey, getattr(SliderValues(), field))
                )
                kept[ckey] = got[field]
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
if st.session_state.pop("example_pending", False):  # a one-click About example: apply its view, run its sweep
    st.session_state["lab_mode"] = "Sliders"
    for name, fam in FAMILIES.items():
        if name in example:
            try:
                v = fam.clamp(float(example[name]))
            except (TypeError, ValueError):
                continue
            st.session_state[_key(name)] = bool(v >= 0.5) if fam.flag else v
    if "sweep" in example:
        with contextlib.suppress(ConfigError):
            st.session_state["lab_sweep"] = find_family(example["sweep"]).name
            st.session_state["lab_sweep_auto"] = True


@st.fragment
def _sweep(values: list[SliderValues], mode: str, image: np.ndarray, predictors) -> None:
    """The sweep of one family, for the lab's model or all models: a fragment, so its widgets rerun only it."""
    with st.expander("Sweep one augmentation family", expanded="sweep" in example):
        names = list(FAMILIES)
        try:
            want = find_family(example["sweep"]).name if "sweep" in example else names[0]
        except ConfigError:
            want = names[0]
        st.session_state.setdefault("lab_sweep", want)  # one source of the default: no index beside the key
        sweep = st.selectbox("Family", names, format_func=lambda n: FAMILIES[n].label, key="lab_sweep")
        all_models = st.toggle("All models at once", key="lab_sweep_all")
        if st.button("Run sweep", key="lab_sweep_run") or st.session_state.pop("lab_sweep_auto", False):
            base = values[0] if mode == "Sliders" else SliderValues()
            chosen = ui.discover_models() if all_models else {sel.model: sel.checkpoint}
            models = {}
            for label, ckpt in chosen.items():
                loaded = ui.load_model(ckpt, stop=False)
                if loaded is not None:
                    models[label] = loaded[0]
            fitted = {} if predictors is None else {sel.model: predictors}
            curves = sweep_models(models, image, base, sweep, space, fitted)
            st.session_state["lab_sweep_rows"] = (sweep, space, curves)
        if "lab_sweep_rows" in st.session_state:
            name, swept_space, curves = st.session_state["lab_sweep_rows"]
            for c in curves:
                if c.error:
                    st.warning(f"No curve for {c.error}")
            if name in M.not_encoded_families():
                st.caption(
                    f"{FAMILIES[name].label} is not encoded by the 15-d parameter vector: no predictor knows the "
                    "strength, so cos(Δ, Δ̂) is blank (only the mean-Δ guess, which knows the group, is drawn)."
                )
            elif any(not c.error and not c.guesses for c in curves):
                st.caption(
                    "cos(Δ, Δ̂) is drawn for the model open in the lab (its predictors and guesses are fitted per "
                    "store) and for EquiMod models in their equivariant space (their own predictor); other models "
                    "have no predictor here."
                )
            several = sum(not c.error for c in curves) > 1
            if several:
                st.caption(
                    "Models' embeddings differ in scale and size, so the left chart divides |Δ| by the image's own "
                    "|z(x)|: 0 = invariant, 1 = moved as far as the embedding is long."
                )
            norm_key, norm_title = ("rel_norm", "|Δ| / |z(x)|") if several else ("norm", "|Δ|")
            c1, c2 = st.columns(2)
            for col, key, title in ((c1, norm_key, norm_title), (c2, "cos", "cos(Δ, Δ̂)")):
                f = go.Figure()
                for c in curves:
                    if c.error:
                        continue
                    # no legend entry for an empty curve (a not-encoded family's cos); its guesses still draw
                    if np.isfinite(getattr(c, key)).any():
                        f.add_trace(
                            go.Scatter(x=c.strengths, y=getattr(c, key), mode="lines+markers", name=c.model)
                        )
                    for g, y in c.guesses.items() if key == "cos" else ():
                        if not np.isfinite(y).any():
                            continue
                        _, colour, dash = STYLE[g]
                        f.add_trace(
                            go.Scatter(
                                x=c.strengths,
                                y=y,
                                mode="lines+markers",
                                name=f"{c.model}: {SHORT[g]} guess",
                                line=dict(color=colour, dash=dash),
                            )
                        )
                if not f.data:  # nothing to draw: say so rather than draw empty axes
                    col.info(f"No {title} to draw for {FAMILIES[name].label} here.")
                    continue
                f.update_layout(
                    height=320,
                    title=f"{title} vs {FAMILIES[name].label} ({swept_space})",
                    margin=dict(l=10, r=10, t=40, b=10),
                    legend=dict(orientation="h", yanchor="top", y=-0.2),
                    showlegend=True,  # also for one trace: it may be a guess, not the model
                    xaxis_title=FAMILIES[name].label,
                )
                col.plotly_chart(f, key=f"lab_sweep_{key}", config={"displaylogo": False})


@st.fragment
def _lab() -> None:
    """The image, its augmentation and everything computed from them: a fragment, so a slider, a seed or an
    image change reruns only this part (the sidebar and the store lookups keep their last run)."""
    # ---------------------------------------------------------------- the image
    src_col, aug_col = st.columns([1, 2])
    with src_col:
        source = st.radio("Image", ["Dataset", "Upload"], horizontal=True, key="lab_source")
        image = None
        if source == "Dataset":
            n = info["n"]
            if "lab_idx" not in st.session_state:
                st.session_state["lab_idx"] = ui.url_int("idx", 0, 0, n - 1)
            classes = ["any", *info["classes"]]
            cls = st.selectbox("Class", classes, key="lab_class")
            if st.button("Random image", key="lab_random_img"):
                pool = (
                    np.arange(n) if cls == "any" else np.flatnonzero(info["labels"] == classes.index(cls) - 1)
                )
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

    # ---------------------------------------------------------------- the augmentation
    # Drawn before the "no image yet" stop: a run that stops before a widget makes the browser forget its value while
    # the server keeps it, and the sliders would come back showing their minimum.
    model, _ = ui.load_model(sel.checkpoint)
    with aug_col:
        mode = st.radio(
            "Augmentation", ["Sliders", "Sample random (seeded)"], horizontal=True, key="lab_mode"
        )
        if mode == "Sliders":
            values = [_sliders()]
        else:
            c1, c2 = st.columns(2)
            seed = c1.number_input("Seed", 0, 2**31 - 1, 0, key="lab_seed")
            n_views = c2.slider("Views", 1, 4, 2, key="lab_nviews")
            recipe = training_recipe(model)
            values = [] if image is None else random_values(recipe, image.shape[:2], int(seed), n_views)
            st.caption(_recipe_caption(recipe))
    with src_col:
        if image is None:
            st.info("Pick a dataset image or upload one.")
            return  # not st.stop(): inside a fragment it would drop what this run drew (the upload error)
        st.image(displayable(image), caption=caption, width=160)
        h, w = image.shape[:2]
        if h != w:  # engine.augment.preprocess: the whole image is resized, not centre-cropped
            side = model.image_size
            st.caption(
                f"{w}×{h} px, not square: the model sees the whole image stretched to {side}×{side}, as every "
                "embedding in this tool does (the views below show it so)."
            )

    predictors = cached.lab_predictors(ref, space, model, sel.checkpoint)
    try:
        res = lab_predictions(model, image, values, space, predictors, cached.reference(ref, space))
    except EquiLabError as e:
        ui.show_error(e)
        return
    disp = res.disp
    # The retrieval page can query with the current view.
    st.session_state["lab_view"] = {
        "z": disp.z[0],
        "space": space,
        "image": disp.views[0],
        "store": str(ref.path),
    }

    # ---------------------------------------------------------------- views and numbers
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Views and displacements")
        if predictors is None:
            st.caption(
                f"Space **{space}** · predictor: **none** (the predictors could not be fitted: cos is blank)"
            )
        else:
            st.caption(
                f"Space **{space}** · predictor: **{predictors.method_name}**, beside two model-free guesses: the mean "
                "displacement of the view's family and strength, and a ridge from the augmentation parameters alone "
                f"(all fitted on {predictors.n_fit:,} views of {predictors.fit_on.split(' (')[0]}). "
                "**Relative invariance**: 1 = the view embeds as the image itself, 0 = as far as another image is "
                "(the between-image baseline)."
            )
            if " (" in predictors.fit_on:  # fell back to the store's own items: say so, with why
                st.caption(
                    f"Fitted on {predictors.fit_on}: a dataset image shown here may be one the predictors saw."
                )
        for i, v in enumerate(values):
            cols = st.columns([0.9, 1.3, 1, 1.1])
            cols[0].image(displayable(disp.views[i]), caption=f"view {i + 1}", width=96)
            cols[1].metric("|Δ|", f"{disp.norm[i]:.4f}")
            inv = np.nan if disp.rel_invariance is None else float(disp.rel_invariance[i])
            between = (
                ""
                if res.centred_cos is None
                else f"; centred cos {res.centred_cos[i]:.3f} vs {res.between_cos:.3f} between different images"
            )
            cols[1].metric(
                "relative invariance",
                _fmt(inv),
                help="1 − |s(a(x)) − s(x)|² / E|s(x) − s(x′)|² on the store's standardised embeddings: "
                "0 is the between-image baseline" + between,
            )
            blank = np.full(len(values), np.nan)
            cols[2].metric(
                "cos(Δ, Δ̂)", _fmt(res.cos.get(M.METHOD, blank)[i]), help="the model's or post-hoc prediction"
            )
            for name, label in GUESS_LABELS.items():
                cols[3].metric(
                    label, _fmt(res.cos.get(name, blank)[i]), help=_guess_help(name, res.groups[i])
                )
            if verdict := _verdict(res, i):
                st.caption(f"View {i + 1}: {verdict}")
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
        moved = [i for i in range(len(values)) if res.moved(i)]
        if not moved:
            st.info(
                "No displacement: every view embeds exactly as the original (Δ = 0), so there is no arrow to draw."
            )
        else:
            deltas = disp.actual[moved]
            if basis_kind == "Store PCA 1-2":
                basis = cached.pca(str(ref.path), ref.stamp, space)
            else:
                basis = displacement_basis(deltas, emb)
            o = basis.project(disp.z0[0])
            fig = go.Figure()
            if not zoom:
                cloud = basis.project(emb[:: max(1, len(emb) // 3000)])
                fig.add_trace(
                    go.Scattergl(
                        x=cloud[:, 0],
                        y=cloud[:, 1],
                        mode="markers",
                        marker=dict(size=3, color="lightgray"),
                        name="store items",
                        hoverinfo="skip",
                    )
                )
            tips = {"actual": [basis.project(disp.z[i]) for i in moved]}
            for name in (M.METHOD, "mean_delta", "params_only"):
                if name in res.delta_hat:
                    rows = [i for i in moved if np.isfinite(res.delta_hat[name][i]).all()]
                    tips[name] = [basis.project(disp.z0[i] + res.delta_hat[name][i]) for i in rows]
                    _arrows(fig, name, o, tips[name], [""] * len(rows))
            _arrows(
                fig, "actual", o, tips["actual"], [f"view {i + 1}" if len(values) > 1 else "Δ" for i in moved]
            )
            fig.add_trace(
                go.Scatter(
                    x=[o[0]],
                    y=[o[1]],
                    mode="markers",
                    marker=dict(size=9, color="black"),
                    name="original e(x)",
                    legendrank=5,
                )
            )
            pts = np.vstack([o[None], *[np.asarray(t) for t in tips.values() if t]])
            if zoom:  # a square window around the arrows: equal scales, the origin and every tip inside
                centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
                half = max(float((pts.max(axis=0) - pts.min(axis=0)).max()) * 0.6, 1e-9)
                fig.update_xaxes(range=[centre[0] - half, centre[0] + half])
                fig.update_yaxes(range=[centre[1] - half, centre[1] + half])
            fig.update_yaxes(scaleanchor="x", scaleratio=1)
            fig.update_layout(
                height=500,
                margin=dict(l=10, r=10, t=40, b=10),
                title=dict(text=f"Displacements in the {basis.name} plane ({space})", font=dict(size=14)),
                legend=dict(orientation="h", yanchor="top", y=-0.14, xanchor="left", x=0),
                xaxis_title="axis 1",
                yaxis_title="axis 2",
            )
            st.plotly_chart(fig, key="lab_arrows", config={"displaylogo": False})
            st.caption(
                "Arrows start at the original image's embedding; equal scales on both axes, so angles between arrows "
                "are the angles in this plane (the cosines on the left are in the full space)."
            )

    # ---------------------------------------------------------------- the pretext head's prediction
    if disp.views is not None and (heads := [head_prediction(model, v) for v in disp.views])[0] is not None:
        h0 = heads[0]
        st.subheader(f"Pretext head: which {h0.task} label does the model see?")
        st.caption(
            f"Softmax of the model's {h0.task} head on each view (resized to {h0.input_size} px, the size it was "
            "trained on)."
            + (
                " The view's label is its rotation angle's nearest multiple of 90° (counter-clockwise, like the head's "
                "labels); an angle between them is marked as rounded."
                if h0.task == "rotation"
                else ""
            )
        )
        for col, i, h in zip(st.columns(len(heads)), range(len(heads)), heads, strict=True):
            top = h.argmax
            f = go.Figure(
                go.Bar(
                    x=list(h.labels),
                    y=h.probs,
                    marker_color=["#d62728" if j == top else "#9ecae1" for j in range(len(h.labels))],
                )
            )
            f.update_layout(
                height=220,
                margin=dict(l=10, r=10, t=30, b=10),
                yaxis=dict(range=[0, 1]),
                title=f"view {i + 1}",
            )
            col.plotly_chart(f, key=f"lab_pretext_{i}", config={"displaylogo": False})
            line = f"predicts **{h.labels[top]}** (p = {h.probs[top]:.2f})"
            if h.task == "rotation":
                k, exact = rotation_label(values[i].rotation)
                verdict = "right" if top == k else "wrong"
                note = "" if exact else f", rounded from {values[i].rotation:g}°"
                line += f"; the view is **{h.labels[k]}**{note}: {verdict}"
            col.caption(line)

    # ---------------------------------------------------------------- neighbours of each view
    k = 6
    hits = cached.search(ref, space, disp.z, k)
    th = cached.thumbs(str(ref.path), ref.stamp)
    st.subheader("Nearest neighbours of each view")
    for i in range(len(disp.z)):
        ids = np.asarray(hits.ids)[i]
        st.image([th[j] for j in ids], caption=[info["classes"][info["labels"][j]] for j in ids], width=56)

    _sweep(values, mode, image, predictors)


_lab()
