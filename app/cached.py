"""Cached access to embedding stores for the pages: build-on-first-open with progress, then cheap reads.

Arrays and DataFrames go through ``st.cache_data`` (keyed on store path + manifest mtime); the FAISS index
goes through ``st.cache_resource``. The store is opened (and its checksums verified) only on a cache miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import ui


@dataclass(frozen=True)
class StoreRef:
    """A built store on disk; ``stamp`` (manifest mtime) invalidates the caches when it is rebuilt."""

    path: Path
    stamp: float


def _open(path: str):
    from engine.store import open_store

    return open_store(path)


def _progress_cb(status, bar):
    def cb(*args: Any, **kwargs: Any) -> None:
        # Accept (fraction, message) or (done, total, message): the engine owns the exact signature.
        nums = [a for a in args if isinstance(a, int | float)]
        msg = next((a for a in args if isinstance(a, str)), kwargs.get("message", ""))
        frac = nums[0] / max(nums[1], 1) if len(nums) >= 2 else (nums[0] if nums else 0.0)
        bar.progress(min(max(float(frac), 0.0), 1.0), text=msg or None)
        if msg:
            status.update(label=f"Building store: {msg}")

    return cb


def store_for(sel: ui.Selection, checkpoint: Path | None = None) -> StoreRef:
    """The store of (checkpoint, dataset, split), built on first open with a visible progress bar.

    Shows what is wrong and the fixing command, then stops the page, when it cannot be built or opened.
    """
    from engine.errors import EquiLabError

    mod = ui.engine("store", "ensure_store", "open_store")
    ckpt = checkpoint or sel.checkpoint
    if ckpt is None:
        st.info("Pick a model in the sidebar (no checkpoints found).")
        st.stop()
    key = ("store_path", str(ckpt), ui._stamp(ckpt), sel.dataset, sel.split)
    memo = st.session_state.setdefault("_stores", {})
    if key not in memo:
        try:
            path = _ensure(mod, ckpt, sel)
        except EquiLabError as e:
            ui.show_error(
                e,
                f"python -m engine embed --checkpoint {ckpt} --dataset {sel.dataset} --split {sel.split} "
                f"--out {ui.roots()['stores']}",
            )
            st.stop()
        memo[key] = path
    path = Path(memo[key])
    return StoreRef(path=path, stamp=ui._stamp(path))


def _ensure(mod, ckpt: Path, sel: ui.Selection) -> Path:
    """ensure_store with a progress display when it has to build; returns the store directory."""
    slot = st.empty()  # the progress box disappears once the store is ready
    with slot.container():
        status = st.status(f"Opening the {sel.dataset}/{sel.split} store of {ckpt.stem}…", expanded=True)
        with status:
            bar = st.progress(0.0)
            result = mod.ensure_store(
                ckpt, sel.dataset, sel.split, root=ui.roots()["stores"], progress=_progress_cb(status, bar)
            )
    slot.empty()
    return Path(getattr(result, "path", result))


@st.cache_data(max_entries=16, show_spinner=False)
def summary(path: str, stamp: float) -> dict[str, Any]:
    """spaces, classes, labels [N], meta DataFrame and N of a store."""
    s = _open(path)
    labels = np.asarray(s.labels, dtype=np.int64)
    meta = s.meta if isinstance(s.meta, pd.DataFrame) else pd.DataFrame(s.meta)
    return {
        "spaces": list(s.spaces),
        "classes": list(s.classes),
        "labels": labels,
        "meta": meta,
        "n": len(labels),
    }


@st.cache_data(max_entries=32, show_spinner=False)
def embeddings(path: str, stamp: float, space: str) -> np.ndarray:
    return np.asarray(_open(path).embeddings(space), dtype=np.float32)


@st.cache_data(max_entries=32, show_spinner="Projecting (first time only)…")
def coords(path: str, stamp: float, space: str, kind: str) -> np.ndarray:
    """[N, 2] float32 map coordinates ("umap" or "pca2"), computed once by the store and cached on disk."""
    return np.asarray(_open(path).coords(space, kind), dtype=np.float32)


@st.cache_data(max_entries=8, show_spinner=False)
def thumbs(path: str, stamp: float) -> np.ndarray:
    """uint8 [N, h, w, 3] thumbnails of the whole store."""
    return np.asarray(_open(path).thumbnails)


@st.cache_data(max_entries=32, show_spinner=False)
def pca(path: str, stamp: float, space: str):
    """The store's linear PCA basis (engine.lab.Basis2D) for projecting new vectors next to the cloud."""
    from engine.lab import Basis2D, pca_basis

    s = _open(path)
    basis = getattr(s, "pca_basis", None)
    if callable(basis):
        b = basis(space)
        mean = np.asarray(getattr(b, "mean", getattr(b, "origin", None)), dtype=np.float64)
        comps = np.asarray(getattr(b, "components", getattr(b, "axes", None)), dtype=np.float64)[:2]
        return Basis2D(origin=mean, axes=comps, name="store PCA 1-2")
    return pca_basis(np.asarray(s.embeddings(space)))


@st.cache_resource(max_entries=16, show_spinner="Loading index…")
def _index(path: str, stamp: float, space: str):
    return _open(path).index(space)


def search(ref: StoreRef, space: str, queries: np.ndarray, k: int):
    """Top-k of each query row in the store: engine.index SearchResult (ids, scores, latency_ms)."""
    mod = ui.engine("index", "search")
    return mod.search(_index(str(ref.path), ref.stamp, space), np.atleast_2d(queries).astype(np.float32), k)


@st.cache_resource(max_entries=16, show_spinner=False)
def _predictor(path: str, stamp: float, space: str):
    try:
        from engine.displacement import load_predictor
    except ImportError:
        return None
    return load_predictor(path, space)


def predictor(ref: StoreRef, space: str):
    """The post-hoc displacement predictor saved beside the store for ``space``, or None if there is none."""
    from engine.errors import EquiLabError

    try:
        return _predictor(str(ref.path), ref.stamp, space)
    except (EquiLabError, FileNotFoundError):
        return None
