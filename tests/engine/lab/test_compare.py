"""engine.lab.compare: kNN ids, overlap@k, label agreement, ranking, Plotly selection -> ids; the map's
stratified sample (engine.store.projection)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.errors import ConfigError
from engine.lab.compare import (
    knn_ids,
    label_agreement,
    neighbour_overlap,
    overlap_at_k,
    overlap_chance,
    rank_changed,
    same_label_chance,
    selection_ids,
)
from engine.store.projection import stratified_sample


def test_knn_ids_on_a_line_excludes_self_and_breaks_ties_by_id():
    # points at angles 0, 10, 20, 90 degrees on the unit circle: cosine neighbours are the angular ones
    ang = np.deg2rad([0.0, 10.0, 20.0, 90.0])
    x = np.stack([np.cos(ang), np.sin(ang)], axis=1) * np.array([[1.0], [3.0], [0.5], [2.0]])  # norms ignored
    nb = knn_ids(x, 2)
    assert nb.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    # identical vectors tie: the lower id comes first
    assert knn_ids(np.ones((4, 3)), 3)[3].tolist() == [0, 1, 2]


def test_knn_ids_rejects_bad_k():
    with pytest.raises(ConfigError, match="k=5"):
        knn_ids(np.eye(3), 5)


def test_neighbour_overlap_hand_computed():
    a = np.array([[1, 2, 3], [0, 2, 3]])
    b = np.array([[3, 1, 9], [7, 8, 9]])
    assert neighbour_overlap(a, b).tolist() == [2 / 3, 0.0]
    with pytest.raises(ConfigError):
        neighbour_overlap(a, b[:, :2])


def test_overlap_at_k_is_one_for_a_rotated_copy_and_low_for_a_shuffle():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert np.allclose(overlap_at_k(x, x @ q, k=5), 1.0)  # rotation keeps cosine neighbourhoods
    shuffled = x[rng.permutation(60)]
    assert overlap_at_k(x, shuffled, k=5).mean() < 0.3


def test_rank_changed_orders_by_overlap_then_id():
    r = rank_changed(np.array([0.5, 0.1, 0.1, 1.0]), top=3)
    assert r.ids.tolist() == [1, 2, 0]
    assert r.overlap.tolist() == [0.1, 0.1, 0.5]


def test_selection_ids_reads_customdata_not_point_index():
    sel = {
        "points": [
            {"curve_number": 2, "point_index": 0, "customdata": [41]},
            {"curve_number": 0, "point_index": 0, "customdata": 7},
            {"curve_number": 3, "point_index": 5},  # highlight overlay without ids
            {"curve_number": 2, "point_index": 1, "customdata": [41]},
        ]
    }
    assert selection_ids(sel).tolist() == [7, 41]
    assert selection_ids(None).tolist() == []
    assert selection_ids({"points": []}).tolist() == []


def test_stratified_sample_keeps_class_proportions_and_every_class():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    ids = stratified_sample(labels, len(labels), 100, seed=0)
    counts = np.bincount(labels[ids])
    assert counts.tolist() == [90, 9, 1]
    assert np.all(np.diff(ids) > 0)
    assert stratified_sample(labels[:50], 50, 100, seed=0).tolist() == list(range(50))


def test_label_agreement_counts_neighbours_with_the_same_label():
    # two tight clusters on perpendicular axes; item 2 sits in cluster A but is labelled B
    x = np.array([[1.0, 0.0], [1.0, 0.05], [1.0, -0.05], [0.0, 1.0], [0.05, 1.0], [-0.05, 1.0]])
    labels = np.array([0, 0, 1, 1, 1, 1])
    agree = label_agreement(x, labels, k=2)
    # 0: neighbours 1 (0) and 2 (1) -> 1/2; 2: neighbours 0 and 1, both 0 -> 0; cluster B all agree
    assert agree.tolist() == [0.5, 0.5, 0.0, 1.0, 1.0, 1.0]
    assert label_agreement(x, labels, k=50).tolist() == pytest.approx(
        [1 / 5, 1 / 5, 3 / 5, 3 / 5, 3 / 5, 3 / 5]
    )
    with pytest.raises(ConfigError, match="5 labels for 6"):
        label_agreement(x, labels[:5])


def test_same_label_chance_is_the_agreement_of_random_neighbours():
    """Labels 0,0,0,1 (N = 4): an item of class 0 has 2 of 3 others in its class, the class-1 item none;
    averaged over items (3 * 2/3 + 1 * 0) / 4 = 0.5. It is the mean label agreement of a store whose every
    item has all others as neighbours (k = N - 1), whatever the embedding."""
    labels = np.array([0, 0, 0, 1])
    assert same_label_chance(labels, of=0) == pytest.approx(2 / 3)
    assert same_label_chance(labels, of=1) == 0.0
    assert same_label_chance(labels) == pytest.approx(0.5)
    x = np.random.default_rng(0).standard_normal((4, 3))
    assert label_agreement(x, labels, k=3).mean() == pytest.approx(same_label_chance(labels))
    with pytest.raises(ConfigError, match="at least 2 items"):
        same_label_chance(labels[:1])


def test_overlap_chance_is_the_mean_overlap_of_random_neighbourhoods():
    """k / (N - 1), checked against the mean overlap of random k-subsets of each item's N - 1 others."""
    n, k = 30, 5
    rng = np.random.default_rng(0)

    def random_neighbours() -> np.ndarray:
        return np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])

    draws = [neighbour_overlap(random_neighbours(), random_neighbours()).mean() for _ in range(400)]
    assert overlap_chance(n, k) == pytest.approx(5 / 29)
    assert np.mean(draws) == pytest.approx(overlap_chance(n, k), abs=0.01)
    with pytest.raises(ConfigError, match="k=30 for n=30"):
        overlap_chance(n, n)
