"""FAISS retrieval: self-retrieval, equality with NumPy brute force, query by id, HNSW path."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.errors import StoreError
from engine.store.index import (
    SearchResult,
    build_index,
    normalize,
    read_index,
    search,
    search_ids,
    write_index,
)


def _brute(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = normalize(q) @ normalize(x).T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(s, ids, axis=1)


def test_each_vector_retrieves_itself_first():
    x = np.random.default_rng(0).normal(size=(500, 32))
    res = search(build_index(x), x, k=3, space="backbone")
    assert isinstance(res, SearchResult) and res.k == 3 and res.space == "backbone"
    np.testing.assert_array_equal(res.ids[:, 0], np.arange(500))
    np.testing.assert_allclose(res.scores[:, 0], 1.0, atol=1e-5)
    assert res.latency_ms >= 0


def test_exact_index_equals_numpy_brute_force():
    rng = np.random.default_rng(1)
    x, q = rng.normal(size=(400, 24)), rng.normal(size=(20, 24))
    res = search(build_index(x), q, k=10)
    ids, scores = _brute(x, q, 10)
    np.testing.assert_array_equal(res.ids, ids)
    np.testing.assert_allclose(res.scores, scores, atol=1e-5)


def test_query_by_id_excludes_itself():
    x = np.random.default_rng(2).normal(size=(100, 8))
    index = build_index(x)
    res = search_ids(index, [3, 7], k=5)
    assert res.ids.shape == (2, 5)
    assert 3 not in res.ids[0] and 7 not in res.ids[1]
    ids, _ = _brute(x, x[[3, 7]], 6)
    np.testing.assert_array_equal(res.ids, ids[:, 1:])
    kept = search_ids(index, [3], k=2, exclude_self=False)
    assert kept.ids[0, 0] == 3


def test_hnsw_above_exact_max_and_round_trip(tmp_path):
    x = np.random.default_rng(3).normal(size=(300, 16))
    index = build_index(x, exact_max=100)
    assert "HNSW" in type(index).__name__
    write_index(index, tmp_path / "a.faiss")
    res = search(read_index(tmp_path / "a.faiss"), x[:50], k=1)
    assert (res.ids[:, 0] == np.arange(50)).mean() > 0.95


def test_k_larger_than_store_pads_and_errors():
    index = build_index(np.eye(3))
    res = search(index, np.eye(3)[:1], k=5)
    assert res.ids[0, :3].tolist() == [0, 1, 2] or res.ids[0, 0] == 0
    assert (res.ids[0, 3:] == -1).all()
    with pytest.raises(StoreError, match="dimension"):
        search(index, np.ones((1, 4)), k=1)
    with pytest.raises(StoreError, match="missing"):
        read_index(tmp := __import__("pathlib").Path("/nonexistent/x.faiss"))
    del tmp
