"""PCA basis consistency and UMAP determinism."""

from __future__ import annotations

import numpy as np

from engine.store.projection import pca, project, stratified_sample, umap_2d


def test_pca_recovers_planted_axes_and_projects_new_vectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5)) * np.array([5.0, 3.0, 0.1, 0.1, 0.1]) + 7.0
    b = pca(x, 2)
    np.testing.assert_allclose(np.abs(b.components), np.eye(5)[:2], atol=0.05)
    assert b.explained[0] > b.explained[1] > 0.2
    new = rng.normal(size=(3, 5))
    # A new vector lands where the basis formula says, and the batch/single paths agree.
    np.testing.assert_allclose(project(b, new), (new - b.mean) @ b.components.T, atol=1e-5)
    np.testing.assert_allclose(b.project(new[0]), project(b, new)[0], atol=1e-6)
    np.testing.assert_allclose(pca(x, 2).components, b.components)  # deterministic signs


def test_stratified_sample_keeps_class_shares():
    labels = np.repeat([0, 1], [900, 100])
    ids = stratified_sample(labels, 1000, 100, seed=0)
    assert len(ids) == 100 and (labels[ids] == 1).sum() == 10
    np.testing.assert_array_equal(ids, stratified_sample(labels, 1000, 100, seed=0))


def test_umap_deterministic_under_seed_and_sampled_path():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(60, 8)) + 4 * np.eye(8)[i] for i in range(2)]).astype(np.float32)
    a = umap_2d(x, seed=3, n_neighbors=10)
    np.testing.assert_array_equal(a, umap_2d(x, seed=3, n_neighbors=10))
    assert a.shape == (120, 2) and np.isfinite(a).all()
    labels = np.repeat([0, 1], 60)
    c = umap_2d(x, seed=3, n_neighbors=10, sample_cap=80, labels=labels)
    np.testing.assert_array_equal(c, umap_2d(x, seed=3, n_neighbors=10, sample_cap=80, labels=labels))
    # The two planted clusters stay apart for the transformed (not fitted) items too.
    gap = np.linalg.norm(c[:60].mean(0) - c[60:].mean(0))
    assert gap > 2 * max(c[:60].std(0).max(), c[60:].std(0).max())


def test_umap_reports_fit_and_transform_seconds_and_reads_a_memmap_in_chunks(tmp_path):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(60, 8)) + 4 * np.eye(8)[i] for i in range(2)]).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")  # a store space: read in chunks, never copied whole
    labels = np.repeat([0, 1], 60)
    t: dict[str, float] = {}
    c = umap_2d(mm, seed=3, n_neighbors=10, sample_cap=80, labels=labels, timings=t)
    assert t["umap_fit"] > 0 and t["umap_transform"] > 0
    np.testing.assert_array_equal(c, umap_2d(x, seed=3, n_neighbors=10, sample_cap=80, labels=labels))
    t2: dict[str, float] = {}
    umap_2d(x, seed=3, n_neighbors=10, timings=t2)  # no sample: everything is fitted
    assert t2["umap_fit"] > 0 and t2["umap_transform"] == 0.0
