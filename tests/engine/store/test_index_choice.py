"""Index choice (issue 16): exact below the size threshold, approximate indexes tuned to a recall target on
held-out items, exact search on demand, the manifest's record of it all, and stores written before it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.data import load_dataset
from engine.store.build import embed_batches
from engine.store.format import StoreArrays, StoreOptions, open_store, write_store
from engine.store.index import (
    EXACT_WORK,
    choose_index,
    describe,
    exact_search,
    held_out,
    normalize,
    recall_at_k,
    recall_margin,
    search,
    use_exact,
)
from engine.train.checkpoint import load_model

REPO = Path(__file__).resolve().parents[3]


def clustered(
    n: int = 3000, d: int = 32, clusters: int = 30, spread: float = 0.5, seed: int = 0
) -> np.ndarray:
    """Real-embedding-like data: Gaussian clusters of unequal size around random centres (seeded)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    which = rng.choice(clusters, size=n, p=rng.dirichlet(np.ones(clusters)))
    return (centres[which] + spread * rng.normal(size=(n, d))).astype(np.float32)


def brute(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = normalize(q) @ normalize(x).T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(s, ids, axis=1)


def fresh_recall(index, x: np.ndarray, k: int = 10, seed: int = 99) -> float:
    """recall@k of ``index`` on held-out items other than the tuning queries (seed differs), self excluded."""
    qids = held_out(len(x), 300, seed)
    truth, _ = brute(x, x[qids], k + 1)
    truth = np.array([[i for i in row if i != q][:k] for row, q in zip(truth, qids)])
    return recall_at_k(search(index, x[qids], k, exclude=qids).ids, truth, k)


def test_recall_at_k_on_a_constructed_case():
    found = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    truth = np.array([[4, 3, 9, 8], [5, 6, 7, 8]])
    assert recall_at_k(found, truth, 4) == pytest.approx((2 / 4 + 2 / 4) / 2)
    assert recall_at_k(found[:, :2], truth[:, :2], 2) == pytest.approx((0 + 1) / 2)


def test_recall_margin_is_two_standard_errors():
    assert recall_margin(0.95, 500, 10) == pytest.approx(1.96 * (0.95 * 0.05 / 5000) ** 0.5)
    assert recall_margin(1.0, 500, 10) == 0.0 and recall_margin(0.95, 100, 10) > recall_margin(0.95, 500, 10)


def test_exact_threshold_is_n_times_d_unless_capped():
    assert use_exact(EXACT_WORK // 128, 128) and not use_exact(EXACT_WORK // 128 + 1, 128)
    assert use_exact(32_768, 512) and not use_exact(32_769, 512)
    assert use_exact(1_000_000, 128, exact_max=1_000_000) and not use_exact(101, 2, exact_max=100)


def test_small_store_gets_the_exact_index():
    x = clustered(500, 16)
    index, info = choose_index(x)
    assert info["kind"] == "flat" and info["exact"] and info["recall"] == 1.0
    assert describe(info) == "exact (flat)"
    ids, _ = brute(x, x[:20], 10)
    np.testing.assert_array_equal(search(index, x[:20], 10).ids, ids)


def test_hnsw_is_tuned_to_the_recall_target(kind="hnsw", param="efSearch"):
    x = clustered()
    index, info = choose_index(x, target_recall=0.95, kind=kind, n_queries=300)
    assert info["kind"] == kind and not info["exact"]
    assert info["recall"] >= 0.95 and info["n_queries"] == 300 and info["k"] == 10
    assert param in info["params"] and info["tuning"][-1][param] == info["params"][param]
    need = 0.95 + recall_margin(0.95, 300, 10)
    assert info["margin"] == pytest.approx(recall_margin(0.95, 300, 10), abs=1e-4)
    assert info["recall"] >= need and all(
        t["recall"] < need for t in info["tuning"][:-1]
    )  # the first that does
    assert fresh_recall(index, x) >= 0.93  # other queries than those it was tuned on
    assert describe(info).startswith("approximate (") and "recall@10" in describe(info)


def test_unreachable_target_keeps_the_exact_index():
    x = np.random.default_rng(5).normal(size=(2000, 48)).astype(np.float32)  # isotropic: hard for HNSW
    index, info = choose_index(x, target_recall=0.999, kind="hnsw", ladder=(1,), n_queries=200)
    assert info["kind"] == "flat" and info["exact"] and "exact index kept" in info["note"]
    assert info["tuning"][0]["recall"] < 0.999
    ids, _ = brute(x, x[:5], 10)
    np.testing.assert_array_equal(search(index, x[:5], 10).ids, ids)


def test_exact_on_demand_equals_brute_force():
    x = clustered(2500, 24, seed=3)
    q = np.random.default_rng(4).normal(size=(7, 24)).astype(np.float32)
    ids, scores = brute(x, q, 10)
    index, _ = choose_index(x, kind="hnsw", n_queries=100)
    res = search(index, q, 10, exact=True)
    assert res.exact and not search(index, q, 10).exact
    np.testing.assert_array_equal(res.ids, ids)
    np.testing.assert_allclose(res.scores, scores, atol=1e-5)
    s, i = exact_search(x, q, 10, block=700)  # blockwise, the blocks' results merged
    np.testing.assert_array_equal(i, ids)
    np.testing.assert_allclose(s, scores, atol=1e-5)
    s, i = exact_search(x, x[[3, 9]], 5, exclude=np.array([3, 9]), block=1000)
    full, _ = brute(x, x[[3, 9]], 6)
    np.testing.assert_array_equal(i, full[:, 1:])


def test_large_batches_go_to_the_exact_scan_when_the_build_measured_it_faster():
    x = clustered(1500, 16, seed=6)
    index, _ = choose_index(x, kind="hnsw", n_queries=100)
    faster = {"batch256_ms": {"index": 10.0, "exact": 1.0}}
    assert search(index, x[:64], 5, info=faster).exact
    assert not search(index, x[:63], 5, info=faster).exact
    assert not search(index, x[:64], 5, info={"batch256_ms": {"index": 1.0, "exact": 10.0}}).exact


def _store(tmp_path: Path, x: np.ndarray, options: StoreOptions) -> Path:
    n = len(x)
    arrays = StoreArrays(
        embeddings={"backbone": x},
        labels=np.arange(n) % 3,
        classes=("a", "b", "c"),
        images=np.zeros((n, 8, 8, 3), np.uint8),
    )
    return write_store(tmp_path / "s", arrays, {"checkpoint_sha256": "x"}, options)


def test_manifest_records_the_index_and_the_store_applies_it(tmp_path):
    x = clustered(2500, 32, seed=7)
    s = open_store(_store(tmp_path, x, StoreOptions(umap=False, index_kind="hnsw", target_recall=0.9)))
    info = s.manifest["index"]["backbone"]
    assert info["kind"] == "hnsw" and info["recall"] >= 0.9 and info["target_recall"] == 0.9
    assert s.index_info("backbone") == info
    assert s.index("backbone").hnsw.efSearch == info["params"]["efSearch"]
    q = x[[1, 2]]
    ids, _ = brute(x, q, 10)
    exact = s.search("backbone", q, 10, exact=True)
    assert exact.exact
    np.testing.assert_array_equal(exact.ids, ids)
    assert recall_at_k(s.search("backbone", q, 10).ids, ids, 10) >= 0.8


def test_ivfpq_store_is_tuned_and_searches_exactly_on_demand(tmp_path):
    x = clustered(2500, 32, seed=8)
    s = open_store(_store(tmp_path, x, StoreOptions(umap=False, index_kind="ivfpq")))
    info = s.index_info("backbone")
    assert (
        info["kind"] == "ivfpq" and info["recall"] >= 0.95 and {"nprobe", "k_factor"} <= set(info["params"])
    )
    assert info["tuning"][-1]["recall"] == info["recall"] and "nprobe=" in describe(info)
    assert fresh_recall(s.index("backbone"), x) >= 0.93
    ids, _ = brute(x, x[:3], 10)
    np.testing.assert_array_equal(s.search("backbone", x[:3], 10, exact=True).ids, ids)


def test_store_written_before_index_info_still_opens_as_exact(tmp_path):
    x = clustered(300, 8, seed=9)
    path = _store(tmp_path, x, StoreOptions(umap=False))
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["index"]  # as written before issue 16 (manifest.json is not in its own file list)
    (path / "manifest.json").write_text(json.dumps(manifest))
    s = open_store(path)
    info = s.index_info("backbone")
    assert info["kind"] == "flat" and info["exact"] and info["recall"] == 1.0
    assert describe(info) == "exact (flat)"
    ids, _ = brute(x, x[:4], 5)
    np.testing.assert_array_equal(s.search("backbone", x[:4], 5).ids, ids)


def test_real_embeddings_of_shapes_meet_the_target():
    """A shipped checkpoint's embeddings of 2,000 shapes test images: HNSW tuned to 0.95 holds on fresh queries."""
    model, _ = load_model(REPO / "checkpoints" / "shapes-simclr.json", "cpu")
    images = np.asarray(load_dataset("shapes", split="test").images[:2000])
    out: dict[str, list[np.ndarray]] = {}
    embed_batches(model, images, lambda start, batch: out.setdefault("x", []).append(batch["backbone"]))
    x = np.concatenate(out["x"])
    index, info = choose_index(x, kind="hnsw", n_queries=300)
    assert info["recall"] >= 0.95
    assert fresh_recall(index, x) >= 0.93
