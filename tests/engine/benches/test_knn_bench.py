"""``bench knn``: the shared interleaving helper, real vectors tiled to a larger N x D, and a small end-to-end run
whose numbers are checked against their definitions (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.benches.common import interleave
from engine.benches.knn import tile_to
from engine.cli import main
from engine.store.format import StoreArrays, StoreOptions, write_store


def test_common_interleave_rotates_the_order_every_round() -> None:
    calls: list[str] = []
    cases = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    syncs: list[int] = []
    times = interleave(cases, rounds=3, warmup=1, sync=lambda: syncs.append(1))
    # warm-up a b c, then round 0: a b c, round 1: b c a, round 2: c a b
    assert "".join(calls) == "abc" + "abc" + "bca" + "cab"
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert len(syncs) == 1 + 9  # after the warm-up, then after every timed call
    two: list[str] = []
    interleave({n: (lambda n=n: two.append(n)) for n in "ab"}, rounds=2, warmup=0)
    assert "".join(two) == "abba"  # two cases: given order, then reversed


def test_tile_to_grows_real_vectors_into_their_neighbourhoods() -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(20, 16))[rng.integers(0, 20, 400)] + 0.3 * rng.normal(size=(400, 16))).astype(
        np.float32
    )
    out, note = tile_to(x, 2000, 24, seed=1)
    assert out.shape == (2000, 24) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert "projected 16-d -> 24-d" in note and "tiled 400 real vectors to 2,000" in note
    # copy i and copy i + 400 come from the same real vector: closer to each other than to a random other copy
    same = np.sum(out[:400] * out[400:800], axis=1)
    other = np.sum(out[:400] * out[np.roll(np.arange(400, 800), 7)], axis=1)
    assert np.median(same) > np.median(other)
    kept, note = tile_to(x, 100, 16)
    assert kept.shape == (100, 16) and note == "real vectors as stored"


def test_bench_knn_on_a_store_reports_recall_latency_and_ratios(tmp_path, capsys) -> None:
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(25, 16))[rng.integers(0, 25, 1500)] + 0.4 * rng.normal(size=(1500, 16))).astype(
        np.float32
    )
    arrays = StoreArrays(
        {"backbone": x}, np.zeros(1500, np.int64), ("a",), np.zeros((1500, 8, 8, 3), np.uint8)
    )
    store = write_store(tmp_path / "s", arrays, {"checkpoint_sha256": "x"}, StoreOptions(umap=False))
    out = tmp_path / "knn.json"
    argv = ["bench", "knn", "--store", str(store), "--space", "backbone", "--kinds", "flat,hnsw"]
    argv += ["--n", "3000", "--rounds", "20", "--batch-rounds", "2", "--queries", "200", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "tiled 1,500 real vectors to 3,000" in text and "p50_vs_flat" in text
    res = json.loads(out.read_text())
    assert res["n"] == 3000 and res["dim"] == 16 and res["k"] == 10
    flat, hnsw = res["rows"]
    assert flat["index"] == "flat" and flat["recall@k"] == 1.0 and flat["p50_vs_flat"] == 1.0
    assert hnsw["index"] == "hnsw" and hnsw["tuned_recall"] >= 0.95 and hnsw["recall@k"] >= 0.9
    assert "efSearch=" in hnsw["params"] and hnsw["size_mb"] > flat["size_mb"] > 0
    for row in res["rows"]:
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["batch_qps"] == pytest.approx(200 / (row["batch256_ms"] / 1e3))  # 200 queries < 256
        assert abs(row["batch_vs_flat"] - flat["batch256_ms"] / row["batch256_ms"]) < 1e-9
