"""First open (issue 16): a store without UMAP shows the PCA map with a progress note while the app's background
job computes UMAP, and the map switches to UMAP when the job is done; engine.lab.precompute writes the same
coordinates the store builder would."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from app import cached
from engine.lab.precompute import add_umap, missing_umap, umap_path
from engine.store.format import StoreOptions, open_store
from engine.store.projection import umap_2d


@pytest.fixture
def own_roots(store_roots, tmp_path, monkeypatch) -> dict[str, str]:
    """A private copy of the fixture roots (this test writes UMAP coordinates into a store)."""
    env = {}
    for key, src in store_roots.items():
        dst = tmp_path / Path(src).name
        shutil.copytree(src, dst)
        env[key] = str(dst)
        monkeypatch.setenv(key, str(dst))
    return env


def first_store(env: dict[str, str]) -> Path:
    return sorted(Path(env["EQUILAB_STORES"]).glob("*/manifest.json"))[0].parent


def test_add_umap_writes_the_builders_coordinates(own_roots):
    path = first_store(own_roots)
    store = open_store(path)
    assert missing_umap(store) == list(store.spaces)  # the fixture stores are built without UMAP
    space = store.spaces[0]
    out = add_umap(store, space)
    opts = StoreOptions()
    want = umap_2d(
        np.asarray(store.embeddings(space)),
        seed=opts.umap_seed,
        n_neighbors=opts.umap_neighbors,
        min_dist=opts.umap_min_dist,
        sample_cap=opts.umap_sample_cap,
        labels=np.asarray(store.labels),
    )
    assert out == umap_path(path, space)
    np.testing.assert_array_equal(store.coords(space, "umap"), want)  # what the map reads
    assert space not in missing_umap(store)
    open_store(path)  # the manifest still verifies in full


def drawn_x(at, plotly_array, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ids, x) of the points of chart ``i`` (the traces with ids in customdata)."""
    ids, xs = [], []
    for t in json.loads(at.get("plotly_chart")[i].proto.spec)["data"]:
        if "customdata" in t:
            ids.append(plotly_array(t["customdata"]))
            xs.append(plotly_array(t["x"]))
    return np.concatenate(ids).astype(np.int64), np.concatenate(xs)


def test_compare_maps_show_pca_with_progress_then_switch_to_umap(plotly_array, own_roots, page_runner):

    stores = sorted(Path(own_roots["EQUILAB_STORES"]).glob("*/manifest.json"))
    jobs, gate = {}, threading.Event()
    for manifest in stores:  # both models' stores "computing UMAP" until the test opens the gate
        store = open_store(manifest.parent)
        job = cached.UmapJob(spaces=list(store.spaces))
        job.thread = threading.Thread(target=gate.wait, daemon=True)
        job.thread.start()
        jobs[manifest.parent] = cached._umap_jobs()[str(manifest.parent)] = job
    try:
        at = page_runner("compare")
        texts = [p.proto.text for p in at.get("progress")]
        assert sum("UMAP is being computed in the background" in t for t in texts) == 2, texts
        label_a = at.sidebar.selectbox(key="sb_model").value
        path_a = next(p for p in jobs if p.name.startswith(f"{label_a}-"))
        space = at.sidebar.selectbox(key="sb_space").value
        ids, x = drawn_x(at, plotly_array, 0)
        np.testing.assert_allclose(x, open_store(path_a).coords(space, "pca2")[ids, 0], rtol=1e-6)
        gate.set()
        for path, job in jobs.items():
            job.thread.join()
            cached._run_umap(path, job)  # the job's work, here in the test's thread
            assert job.done == len(job.spaces) and job.error is None and not missing_umap(path)
        at.run()
        assert not at.exception
        assert not any("UMAP is being computed" in p.proto.text for p in at.get("progress"))
        ids, x = drawn_x(at, plotly_array, 0)
        np.testing.assert_allclose(x, open_store(path_a).coords(space, "umap")[ids, 0], rtol=1e-6)
    finally:
        gate.set()
        for path in jobs:
            cached._umap_jobs().pop(str(path), None)


def test_a_store_built_without_umap_says_so_once_with_the_command(own_roots, page_runner):
    at = page_runner("map")
    assert not at.exception
    notes = [c.value for c in at.caption if "without UMAP" in c.value]
    assert len(notes) == 1, notes
    store_dir = first_store(own_roots).parent
    assert notes[0].count(str(store_dir)) == 1 and "python -m engine precompute --stores" in notes[0]
