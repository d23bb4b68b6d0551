"""Retrieval: top-k neighbours of a dataset image, an uploaded image, or the lab's current augmented view; says
whether the store's index is exact or approximate (with the recall measured when the store was built) and can
search exactly on demand."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import cached, ui
from engine.lab.compare import same_label_chance
from engine.lab.display import displayable
from engine.lab.query import embed_image
from engine.store.format import open_store
from engine.store.index import describe


@st.cache_resource(max_entries=8, show_spinner="Loading the index…")
def space_index(path: str, stamp: float, space: str):
    """(store, FAISS index with its tuned parameters, index info) of one space, loaded once per store version."""
    store = open_store(path, verify=False)  # store_for() verified it
    index = store.index(space)
    return store, index, store.index_info(space, index)


st.title("Retrieval")
sel = ui.selection()
ref = cached.store_for(sel)
info = cached.summary(str(ref.path), ref.stamp)
space = ui.pick_space(info["spaces"])
labels, classes = info["labels"], info["classes"]

c1, c2, c3 = st.columns([2, 1, 1])
source = c1.radio("Query", ["Dataset image", "Upload", "Lab view"], horizontal=True, key="ret_source")
k = int(c2.slider("k", 1, 32, 8, key="ret_k"))
store, index, index_info = space_index(str(ref.path), ref.stamp, space)
exact = c3.toggle(
    "Exact search",
    value=False,
    key="ret_exact",
    disabled=bool(index_info.get("exact")),
    help="Scan every stored vector instead of the approximate index (slower on large stores).",
)

query, query_label, show, exclude = None, None, None, None
if source == "Dataset image":
    if "ret_idx" not in st.session_state:  # the URL's id once; then the widget's
        st.session_state["ret_idx"] = ui.url_int("q", 0, 0, info["n"] - 1)
    idx = int(st.number_input("Image id", 0, info["n"] - 1, key="ret_idx"))
    ui.set_qp(q=idx)
    query = cached.embeddings(str(ref.path), ref.stamp, space)[idx]
    query_label, show = int(labels[idx]), cached.thumbs(str(ref.path), ref.stamp)[idx]
    exclude = np.array([idx])  # the store's own item is not its own neighbour
elif source == "Upload":
    up = st.file_uploader("Query image (≤ 10 MB)", key="ret_upload")
    img = ui.decode_upload(up)
    if img is not None:
        model, _ = ui.load_model(sel.checkpoint)
        query, show = embed_image(model, img, space), img
else:
    view = st.session_state.get("lab_view")
    if view is None:
        st.info("No lab view yet: open the Augmentation lab, compose a view, then come back.")
    elif view["space"] != space or view["store"] != str(ref.path):
        st.info(f"The lab view was embedded with another model/space ({view['space']}); revisit the lab.")
    else:
        query, show = view["z"], np.transpose(view["image"], (1, 2, 0)).clip(0, 1)

if query is None:
    st.stop()

st.image(displayable(show), caption=f"query: {up.name}" if source == "Upload" else "query", width=112)
res = store.search(
    space, np.atleast_2d(np.asarray(query, dtype=np.float32)), k, exact=exact, exclude=exclude, index=index
)
ids, scores = np.asarray(res.ids)[0], np.asarray(res.scores)[0]
found = ids >= 0  # a store with fewer than k other items pads with -1
ids, scores = ids[found], scores[found]
st.metric("Query latency", f"{float(res.latency_ms):.2f} ms")
st.caption(
    "Search: " + (describe(index_info) if not res.exact or index_info.get("exact") else "exact (on demand)")
)
th = cached.thumbs(str(ref.path), ref.stamp)
caps = []
for i, s in zip(ids, scores):
    mark = "" if query_label is None else (" ✓" if labels[i] == query_label else " ✗")
    caps.append(f"{classes[labels[i]]} · {s:.3f}{mark}")
st.subheader(f"Top {k}")
st.image([displayable(th[i]) for i in ids], caption=caps, width=80)
if query_label is not None:
    chance = same_label_chance(labels, of=query_label)
    st.caption(
        f"{int((labels[ids] == query_label).sum())} of {len(ids)} share the query's label (the query itself left "
        f"out); {len(ids) * chance:.1f} of {len(ids)} would, drawn at random from the store's other items."
    )
