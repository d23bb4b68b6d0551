"""Compare models: two stores of one dataset side by side, linked selection, neighbourhood overlap@k, probes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import cached, ui
from engine.core.errors import EquiLabError
from engine.lab.compare import (
    neighbour_overlap,
    overlap_chance,
    probe_factors,
    rank_changed,
    selection_ids,
)
from engine.lab.display import displayable
from engine.lab.models import trained_on
from engine.lab.robustness import (
    N_FIT,
    N_TEST,
    compute_robustness,
    page_protocol,
    robustness_rows,
    robustness_table,
)
from engine.lab.runs import read_eval
from engine.store.format import open_store
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
    f"Mean overlap@{k}",
    f"{ov.mean():.3f}",
    help="share of each item's k neighbours common to both models; two unrelated models would share "
    f"{overlap_chance(n, k):.3f} (k / (N − 1), neighbours drawn at random), identical neighbourhoods 1",
)
colour = st.radio("Colour", ["label", f"overlap@{k}"], horizontal=True, key="cmp_colour")
colour = "label" if colour == "label" else "overlap"
shown = stratified_sample(labels, n, MAX_POINTS, seed=0)
st.caption(f"Showing {len(shown):,} of {n:,} items per map (per-class sample); overlap uses the full stores.")


def figure(xy: np.ndarray, highlight: np.ndarray) -> go.Figure:
    """One map: classes in their page-wide colours (or overlap on a titled colour bar); when the other map has a
    selection, those items are drawn on top in full colour and the rest dimmed (still visible)."""
    dim = 0.2 if len(highlight) else 1.0
    fig = go.Figure()
    if colour == "label":
        for c, name in enumerate(classes):
            ids = shown[labels[shown] == c]
            if len(ids):
                fig.add_trace(ui.class_points(xy, ids, name, ui.class_colour(c), opacity=dim))
    else:
        fig.add_trace(
            ui.value_points(
                xy,
                shown,
                ov[shown],
                f"overlap@{k}",
                f"overlap@{k}",
                colorscale="Viridis",
                cmin=0.0,
                cmax=1.0,
                opacity=dim,
            )
        )
    if len(highlight):  # linked selection: no customdata, so these points are not selectable ids themselves
        hl = (
            [ui.class_colour(c) for c in labels[highlight]]
            if colour == "label"
            else [f"rgba(0,0,0,{0.4 + 0.6 * v:.2f})" for v in ov[highlight]]
        )
        fig.add_trace(
            go.Scattergl(
                x=xy[highlight, 0],
                y=xy[highlight, 1],
                mode="markers",
                name="selected in the other map",
                marker=dict(size=7, color=hl, line=dict(width=1, color="#333")),
                hoverinfo="skip",
            )
        )
    fig.update_layout(height=470, margin=dict(l=10, r=10, t=30, b=10), dragmode="select")
    return ui.legend_below(fig)


NONE = {"a": np.zeros(0, np.int64), "b": np.zeros(0, np.int64)}


def _events(a=None, b=None) -> dict[str, np.ndarray]:
    """The ids each map's last selection event picked: from the charts' returned events when given, else from
    their widget state (known before the maps are drawn, so one run draws both with the other's highlight)."""
    out = {}
    for side, ev in (("a", a), ("b", b)):
        ev = ev if ev is not None else st.session_state.get(f"cmp_map_{side}")
        picked = ev.get("selection") if isinstance(ev, Mapping) else getattr(ev, "selection", None)
        out[side] = selection_ids(picked)
    return out


def _new_events(now: dict[str, np.ndarray]) -> bool:
    """Remember ``now`` as the selections to highlight when they differ from the last events seen."""
    seen = st.session_state.get("cmp_seen", NONE)
    if all(np.array_equal(now[s], seen[s]) for s in "ab"):
        return False
    st.session_state["cmp_seen"] = st.session_state["cmp_sel"] = now
    return True


@st.fragment
def linked_maps(xy_a: np.ndarray, xy_b: np.ndarray) -> None:
    """Both maps, each highlighting the other's selection: a fragment, so a selection reruns only the maps."""
    _new_events(_events())
    prev = st.session_state.get("cmp_sel", NONE)  # the selections each map highlights in the other
    events = []
    for col, (side, name, xy, other) in zip(
        st.columns(2), (("a", sel.model, xy_a, "b"), ("b", label_b, xy_b, "a")), strict=True
    ):
        col.caption(f"{side.upper()}: {name}")
        events.append(
            col.plotly_chart(
                figure(xy, prev[other]), key=f"cmp_map_{side}", on_select="rerun",
                selection_mode=("box", "lasso", "points"),
            )
        )  # fmt: skip
    ev_a, ev_b = events
    if _new_events(_events(ev_a, ev_b)):  # the widget state was not readable before drawing
        st.rerun(scope="fragment")  # re-render both maps with the other side's highlight
    picked = np.union1d(prev["a"], prev["b"])
    if len(picked):
        st.write(f"{len(picked)} selected; their mean overlap@{k}: {ov[picked].mean():.3f}")


# outside the fragment: a store still computing its UMAP shows its progress (itself a fragment) above the maps
linked_maps(cached.coords(ref_a, space, "umap"), cached.coords(ref_b, space, "umap"))

st.subheader("Neighbourhoods that changed most")
ov_wide = neighbour_overlap(cached.neighbours(ref_a, space, K_MAX), cached.neighbours(ref_b, space, K_MAX))
rank = rank_changed(ov, top=20, tiebreak=ov_wide)
th = cached.thumbs(str(ref_a.path), ref_a.stamp)
st.caption(
    f"Lowest overlap@{k} first; ties ordered by overlap@{K_MAX} (how far the whole neighbourhood moved), then id."
)
st.dataframe(
    ui.table3(
        pd.DataFrame(
            {
                "rank": np.arange(1, len(rank.ids) + 1),
                "id": rank.ids,
                "label": [classes[labels[i]] for i in rank.ids],
                f"overlap@{k}": rank.overlap,
                f"overlap@{K_MAX}": ov_wide[rank.ids],
            }
        )
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
    f"Ridge R² of each shapes factor from the {space} space: from eval.json beside each store (train → test "
    "split), else computed here on the store's test items (fitted on one half, scored on the other)."
)
computed = st.session_state.setdefault(
    "cmp_probes", {}
)  # (store, stamp, space) -> rows computed on this page
missing, rows, how = [], [], {}  # how: model -> the protocol its bars were measured with
probed_here = f"computed here (half and half of {n} items)"  # engine.lab.compare.probe_factors' split
for ref, name in ((ref_a, sel.model), (ref_b, label_b)):
    stored = cached.probes(ref, space)
    got = stored or computed.get((str(ref.path), ref.stamp, space))
    if got is None:
        missing.append((ref, name))
    else:
        rows += [{"model": name, **r} for r in got]
        how[name] = "eval.json (train → test)" if stored else probed_here
if missing and st.button(
    f"Compute the factor probes of {', '.join(n for _, n in missing)} ({space} space)", key="cmp_probe_go"
):
    bar = st.progress(0.0, text="Fitting factor probes…")
    for i, (ref, name) in enumerate(missing):
        meta = cached.summary(str(ref.path), ref.stamp)["meta"]
        emb = cached.embeddings(str(ref.path), ref.stamp, space)

        def step(done: int, total: int, factor: str, i: int = i, name: str = name) -> None:
            bar.progress((i + done / total) / len(missing), text=f"{name}: {factor} ({done}/{total})")

        try:
            got = probe_factors(emb, meta, progress=step)
        except EquiLabError as e:
            st.error(f"Cannot probe {name}: {e}")
            continue
        computed[(str(ref.path), ref.stamp, space)] = got
        rows += [{"model": name, **r} for r in got]
        how[name] = probed_here
    bar.empty()
elif missing:
    st.info(
        "No probe results for "
        + ", ".join(n for _, n in missing)
        + " yet: compute them with the button above "
        "(seconds), or for the train → test protocol with `python -m engine eval --store <store> --only factors`."
    )
if rows:
    df = pd.DataFrame(rows)
    fig = go.Figure([go.Bar(x=g["factor"], y=g["r2"], name=m) for m, g in df.groupby("model", sort=False)])
    fig.update_layout(barmode="group", height=340, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="R²")
    st.plotly_chart(ui.legend_below(fig), key="cmp_probes")
    st.caption(
        "Measured with: " + "; ".join(f"**{m}**: {h}" for m, h in how.items() if m in set(df["model"]))
    )
elif not missing:
    st.info(f"The {sel.dataset} items carry no factors to probe (shapes datasets do).")

st.subheader("Robustness under test-time perturbations")
st.caption(
    f"Linear-probe accuracy of the {space} space on clean images and under CLeVER's test-time perturbations "
    "(colour jitter 0.4/0.4/0.4/0.1, rotation within ±90° or ±180° with zero fill, and both): from eval.json beside "
    f"each store (train → test), else computed here on the store's own items (a probe on up to {N_FIT} clean "
    f"embeddings, scored on up to {N_TEST} other images, seed 0; half and half of a smaller store)."
)
robust = st.session_state.setdefault("cmp_robust", {})  # (store, stamp, space) -> rows computed on this page
r_missing, r_rows, r_how = [], {}, {}  # r_how: model -> the protocol its column was measured with
for ref, name, ckpt in ((ref_a, sel.model, sel.checkpoint), (ref_b, label_b, models[label_b])):
    stored = robustness_rows(read_eval(ref.path), space)
    got = stored or robust.get((str(ref.path), ref.stamp, space))
    if got:
        r_rows[name] = got
        r_how[name] = "eval.json (train → test)" if stored else page_protocol(n)
    else:
        r_missing.append((ref, name, ckpt))
# the button lives in a slot that is emptied once clicked, so it does not linger beside the results it produced
r_slot = st.empty()
if r_missing and r_slot.button(
    f"Compute the robustness of {', '.join(n for _, n, _ in r_missing)} ({space} space)", key="cmp_robust_go"
):
    r_slot.empty()
    bar = st.progress(0.0, text="Robustness…")
    for i, (ref, name, ckpt) in enumerate(r_missing):
        loaded = ui.load_model(ckpt, stop=False)
        if loaded is None:
            continue

        def r_step(done: int, total: int, cond: str, i: int = i, name: str = name) -> None:
            bar.progress((i + done / total) / len(r_missing), text=f"{name}: {cond} ({done}/{total})")

        try:
            got = compute_robustness(loaded[0], open_store(ref.path, verify=False), space, progress=r_step)
        except EquiLabError as e:
            st.error(f"Cannot measure the robustness of {name}: {e}")
            continue
        robust[(str(ref.path), ref.stamp, space)] = r_rows[name] = got
        r_how[name] = page_protocol(n)
    bar.empty()
elif r_missing:
    st.info(
        "No robustness results for "
        + ", ".join(n for _, n, _ in r_missing)
        + " yet: compute them with the button above, or for the train → test protocol with "
        "`python -m engine eval --store <store> --only robustness`."
    )
if r_rows:
    table = robustness_table(r_rows)
    st.dataframe(ui.table3(table), hide_index=True, width="stretch")
    fig = go.Figure([go.Bar(x=table["condition"], y=table[m], name=m) for m in r_rows])
    fig.update_layout(
        barmode="group",
        height=340,
        margin=dict(l=10, r=10, t=10, b=10),
        yaxis=dict(title="accuracy", range=[0, 1]),
    )
    st.plotly_chart(ui.legend_below(fig), key="cmp_robust_chart")
    st.caption("Measured with: " + "; ".join(f"**{m}**: {h}" for m, h in r_how.items()))
