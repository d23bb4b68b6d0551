"""Cached access to embedding stores for the pages: build-on-first-open with progress, then cheap reads.

Arrays and DataFrames go through ``st.cache_data`` (keyed on store path + manifest mtime); the FAISS index
goes through ``st.cache_resource``. The store is opened (and its checksums verified) only on a cache miss.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import ui
from engine.core.errors import EquiLabError, StoreError
from engine.eval.displacement import load_predictor, store_reference
from engine.lab import pretext_choice
from engine.lab.compare import knn_ids, label_agreement
from engine.lab.image import Basis2D
from engine.lab.precompute import add_umap, missing_umap, precompute_store, umap_path
from engine.lab.predictors import LabPredictors, ensure_predictors
from engine.lab.runs import EVAL_FILE, factor_probes, read_eval
from engine.lab.studies import read_summary
from engine.store import discovery, items
from engine.store.build import ensure_store
from engine.store.format import StoreOptions, open_store
from engine.store.index import search as engine_search


@dataclass(frozen=True)
class StoreRef:
    """A built store on disk; ``stamp`` (manifest mtime) invalidates the caches when it is rebuilt."""

    path: Path
    stamp: float


def _open(path: str):
    """Re-open a store that store_for() already verified in full: sizes checked, hashes skipped."""

    return open_store(path, verify=False)


def _progress_cb(status, bar):
    """engine.store.build's ``progress(fraction, message)`` shown as a bar and a status label."""

    def cb(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or None)
        if message:
            status.update(label=f"Building store: {message}")

    return cb


def store_for(sel: ui.Selection, checkpoint: Path | None = None) -> StoreRef:
    """The store of (checkpoint, dataset, split), built on first open with a visible progress bar.

    Verified in full once per session and again whenever its manifest changes; sizes are re-checked on every
    run, so a store damaged or deleted while the page is open also ends in the error box, not a traceback.
    Shows what is wrong and the fixing command, then stops the page, when it cannot be built or opened.
    """

    ckpt = checkpoint or sel.checkpoint
    if ckpt is None:
        st.info("Pick a model in the sidebar (no checkpoints found).")
        st.stop()
    stores = ui.roots()["stores"]
    key = ("store_path", str(ckpt), ui._stamp(ckpt), sel.dataset, sel.split)
    memo = st.session_state.setdefault("_stores", {})
    verified = _verified()
    try:
        if key not in memo:
            path = discovery.find_store(ckpt, sel.dataset, sel.split, stores)
            if path is None:
                path = _build(ckpt, sel)
            memo[key] = Path(path)
        path = memo[key]
        stamp = ui._stamp(path)
        # full sha256 check once per manifest and process (a new browser tab does not re-hash the store)
        open_store(path, verify=verified.get(str(path)) != stamp)
        verified[str(path)] = stamp
    except EquiLabError as e:
        memo.pop(key, None)
        ui.show_store_error(
            e, sel.dataset, discovery.embed_command(ckpt, sel.dataset, sel.split, stores)
        )  # the store read first
        st.stop()
    return StoreRef(path=path, stamp=stamp)


@st.cache_resource(show_spinner=False)
def _verified() -> dict[str, float]:
    """Process-wide: store path -> the manifest stamp whose files were last verified in full (sha256)."""
    return {}


def _build(ckpt: Path, sel: ui.Selection) -> Path:
    """engine.store.build.ensure_store with a progress display while it builds; returns the store directory.

    The store is built without UMAP (the map shows PCA meanwhile) and its UMAP coordinates are computed by a
    background thread (:func:`umap_job`), so the first open waits for the embeddings, the index and the lab's
    predictors (fitted right after the build: every lab visit needs them), not for UMAP."""

    slot = st.empty()  # the progress box disappears once the store is ready, or failed to build
    try:
        with slot.container():
            status = st.status(
                f"Building the {sel.dataset}/{sel.split} store of {ckpt.stem} (first open only)…",
                expanded=True,
            )
            with status:
                bar = st.progress(0.0)
                progress = _progress_cb(status, bar)
                path = ensure_store(
                    ckpt,
                    sel.dataset,
                    sel.split,
                    store_root=ui.roots()["stores"],
                    progress=lambda f, m: progress(0.5 * f, m),
                    options=StoreOptions(umap=False),
                )
                loaded = ui.load_model(ckpt, stop=False)
                if loaded is not None:
                    with contextlib.suppress(EquiLabError, ValueError):  # the lab says why, with its own fit
                        precompute_store(
                            path, loaded[0], lambda f, m: progress(0.5 + 0.5 * f, f"lab predictors: {m}")
                        )
    finally:
        slot.empty()
    umap_job(Path(path))
    return Path(path)


@dataclass
class UmapJob:
    """A background computation of a store's missing UMAP coordinates (one space after the other)."""

    spaces: list[str]
    done: int = 0
    error: str | None = None
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@st.cache_resource(show_spinner=False)
def _umap_jobs() -> dict[str, UmapJob]:
    """Process-wide: store path -> its background UMAP job."""
    return {}


def _run_umap(path: Path, job: UmapJob) -> None:
    """The job's thread: lowest CPU priority (Linux nice values are per thread, and numba's workers started here
    inherit it), so the pages the user is looking at keep the cores; one space after the other."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    try:
        for space in job.spaces:
            add_umap(path, space)
            job.done += 1
    except Exception as e:  # reported on the map instead of the UMAP coordinates
        job.error = f"{type(e).__name__}: {e}"


def umap_job(path: Path) -> UmapJob | None:
    """The background job computing the missing UMAP coordinates of a store the app built, started when some are
    missing and no job runs; None when the store has them all."""
    jobs = _umap_jobs()
    job = jobs.get(str(path))
    if job is not None and (job.running or job.error):
        return job
    try:
        missing = missing_umap(path)
    except EquiLabError:
        return None
    if not missing:
        return None
    job = UmapJob(spaces=missing)
    job.thread = threading.Thread(target=_run_umap, args=(path, job), daemon=True, name=f"umap {path.name}")
    jobs[str(path)] = job
    job.thread.start()
    return job


@st.cache_data(max_entries=16, show_spinner=False)
def summary(path: str, stamp: float) -> dict[str, Any]:
    """spaces, classes, labels [N], meta DataFrame and N of a store."""
    s = _open(path)
    labels = np.asarray(s.labels, dtype=np.int64)
    meta = s.meta
    return {
        "spaces": list(s.spaces),
        "classes": list(s.classes),
        "labels": labels,
        "meta": meta,
        "n": len(labels),
    }


@st.cache_resource(max_entries=32, show_spinner=False)
def embeddings(path: str, stamp: float, space: str) -> np.ndarray:
    """[N, D] float32 vectors of ``space``: the store's read-only memmap itself (shared, never copied, so a 1M store
    is paged in as rows are read); a float16 store is converted once."""
    x = _open(path).embeddings(space)
    return x if x.dtype == np.float32 else np.asarray(x, dtype=np.float32)


@st.cache_data(max_entries=32, show_spinner=False)
def _coords(path: str, stamp: float, space: str, kind: str) -> np.ndarray:
    return np.asarray(_open(path).coords(space, kind), dtype=np.float32)[:, :2]


def coords(ref: StoreRef, space: str, kind: str) -> np.ndarray:
    """[N, 2] map coordinates precomputed by the store; PCA with a note when the store has no UMAP (when the app
    built the store, its UMAP is being computed in the background: a progress bar, and the page reruns with it
    when it is ready)."""

    try:
        return _coords(str(ref.path), ref.stamp, space, kind)
    except StoreError:
        if kind != "umap":
            raise
        job = _umap_jobs().get(str(ref.path))  # only stores this app built (a --no-umap store stays PCA)
        if job is not None and job.error:
            st.caption(f"No UMAP coordinates for {space} (computing them failed: {job.error}); showing PCA.")
        elif job is None:
            st.caption(
                f"This store was built without UMAP coordinates for {space}; showing PCA instead "
                f"(`python -m engine precompute --stores {ref.path.parent}` adds them)."
            )
        else:
            umap_progress(str(ref.path), space)
        return _coords(str(ref.path), ref.stamp, space, "pca2")


@st.fragment(run_every=2.0)
def umap_progress(path: str, space: str) -> None:
    """A progress bar while the background job computes UMAP; a full rerun swaps the UMAP map in when the
    coordinates of ``space`` exist."""
    job = _umap_jobs().get(path)
    if job is None or umap_path(path, space).is_file():
        st.rerun()
    st.progress(
        job.done / max(len(job.spaces), 1),
        text=f"Showing PCA: UMAP is being computed in the background ({job.done}/{len(job.spaces)} spaces "
        "done); the map switches to it when it is ready.",
    )


def store_images(ref: StoreRef) -> np.ndarray:
    """uint8 [N, H, W, 3] images of the store's items (engine.store.items), its thumbnails when the dataset it was
    built on is not reachable."""
    return items.store_images(_open(str(ref.path)), or_thumbnails=True)


@st.cache_data(max_entries=256, show_spinner=False)
def _item_image(path: str, stamp: float, idx: int) -> np.ndarray:
    return np.array(store_images(StoreRef(Path(path), stamp))[idx])


def item_image(ref: StoreRef, idx: int) -> np.ndarray:
    """Full-size uint8 [H, W, 3] image of store item ``idx`` (from the dataset the store was built on)."""
    return _item_image(str(ref.path), ref.stamp, int(idx))


def thumbs(path: str, stamp: float) -> np.ndarray:
    """uint8 [N, h, w, 3] thumbnails, memory-mapped: only the rows a page shows are read (no per-rerun copy)."""
    return _open(path).thumbnails


@st.cache_data(max_entries=32, show_spinner=False)
def pca(path: str, stamp: float, space: str):
    """The store's linear PCA basis (engine.lab.image.Basis2D) for projecting new vectors next to the cloud."""

    b = _open(path).pca_basis(space)  # fitted when the store was built
    axes = np.asarray(b.components, dtype=np.float64)[:2]
    return Basis2D(origin=np.asarray(b.mean, dtype=np.float64), axes=axes, name="store PCA 1-2")


@st.cache_resource(max_entries=16, show_spinner="Loading index…")
def _index(path: str, stamp: float, space: str):
    return _open(path).index(space)


def search(ref: StoreRef, space: str, queries: np.ndarray, k: int, exclude: np.ndarray | None = None):
    """Top-k of each query row in the store: engine.store.index SearchResult (ids, scores, latency_ms)."""

    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    return engine_search(_index(str(ref.path), ref.stamp, space), q, k, space=space, exclude=exclude)


@st.cache_resource(max_entries=16, show_spinner=False)
def _predictor(path: str, stamp: float, space: str):

    return load_predictor(path, space)


def predictor(ref: StoreRef, space: str):
    """The post-hoc displacement predictor saved beside the store for ``space``, or None if there is none."""

    try:
        return _predictor(str(ref.path), ref.stamp, space)
    except (EquiLabError, FileNotFoundError):
        return None


@st.cache_data(max_entries=16, show_spinner="kNN on the full store…")
def _label_agreement(path: str, stamp: float, space: str, k: int) -> np.ndarray:
    return label_agreement(embeddings(path, stamp, space), summary(path, stamp)["labels"], k)


def knn_correct(ref: StoreRef, space: str, k: int = 10) -> np.ndarray:
    """float [N]: share of each item's k nearest neighbours (full store, cosine) with its label."""
    return _label_agreement(str(ref.path), ref.stamp, space, k)


@st.cache_data(max_entries=8, show_spinner="Nearest neighbours on the full store (once per store)…")
def _neighbours(path: str, stamp: float, space: str, k: int) -> np.ndarray:
    emb = embeddings(path, stamp, space)
    return knn_ids(emb, min(k, len(emb) - 1))


def neighbours(ref: StoreRef, space: str, k: int) -> np.ndarray:
    """int64 [N, k] cosine neighbour ids of every item among the others (engine.lab.compare.knn_ids)."""
    return _neighbours(str(ref.path), ref.stamp, space, k)


@st.cache_data(max_entries=16, show_spinner=False)
def _factor_probes(path: str, stamp: float, space: str) -> list[dict] | None:
    rows = read_eval(Path(path))
    return None if rows is None else factor_probes(rows, space)


@st.cache_data(show_spinner=False, max_entries=32)
def _study_summary(path: str, stamp: float) -> dict[str, Any] | None:
    return read_summary(Path(path))


def study_summary(path: Path) -> dict[str, Any] | None:
    """A ``study report`` summary.json (engine.lab.studies.read_summary), parsed once per version of the file
    rather than on every rerun of the About page (the summaries run to a few MB each)."""
    return _study_summary(str(path), ui._stamp(Path(path)))


@st.cache_data(show_spinner=False, max_entries=4)
def _task_table(
    transforms: str, t_stamp: float, inv_vs_eq: str, i_stamp: float, head_vs_lr: str, h_stamp: float
):
    return pretext_choice.task_table(*(study_summary(Path(p)) for p in (transforms, inv_vs_eq, head_vs_lr)))


def task_table(transforms: Path, inv_vs_eq: Path, head_vs_lr: Path):
    """engine.lab.pretext_choice.task_table of three study summaries (the ceilings take ~0.3 s), made once per
    version of the files: keyed by path and time stamp, not by hashing the summaries on every rerun."""
    return _task_table(
        *(x for p in (transforms, inv_vs_eq, head_vs_lr) for x in (str(p), ui._stamp(Path(p))))
    )


def probes(ref: StoreRef, space: str) -> list[dict] | None:
    """The per-factor probe rows ({"factor", "r2"}) of ``space`` from eval.json beside the store; None when the
    store has not been evaluated."""
    return _factor_probes(str(ref.path), ui._stamp(ref.path / EVAL_FILE), space)


@st.cache_data(max_entries=32, show_spinner=False)
def _reference(path: str, stamp: float, space: str):
    return store_reference(_open(path), space)


def reference(ref: StoreRef, space: str):
    """The store's clean-embedding :class:`~engine.eval.measures.Reference` in ``space`` (centre, scale,
    between-image spread): what the lab's and the map's relative invariance is measured against."""
    return _reference(str(ref.path), ref.stamp, space)


@st.cache_resource(show_spinner=False)
def _fitted() -> dict:
    """Process-wide memo of fitted lab predictors: (store, stamp, space, checkpoint, its stamp) -> LabPredictors."""
    return {}


def lab_predictors(ref: StoreRef, space: str, model, checkpoint: Path) -> LabPredictors | None:
    """The store's displacement predictors of ``space`` (engine.lab.predictors.ensure_predictors): read from
    beside the store, or fitted once with a progress bar. None, after one warning line, when they cannot be."""
    key = (str(ref.path), ref.stamp, space, str(checkpoint), ui._stamp(Path(checkpoint)))
    memo = _fitted()
    if key in memo:
        return memo[key]
    slot = st.empty()
    with slot.container():
        bar = st.progress(
            0.0, text="Fitting this store's displacement predictors and baselines (once per store)…"
        )

        def progress(fraction: float, message: str) -> None:
            text = f"Fitting the displacement predictors (once per store): {message}" if message else None
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=text)

        try:
            lp = ensure_predictors(ref.path, model, space, progress=progress)
        except (EquiLabError, ValueError) as e:  # ValueError: too few views of encoded families to fit
            lp, failure = None, getattr(e, "reason", e)
    slot.empty()  # outside the container it clears: a line written inside it would land in an emptied slot
    if lp is None:
        st.warning(f"No displacement predictors for {space}: {failure}")
        return None
    memo[key] = lp
    return lp
