"""``bench embed``: both paths measured interleaved round by round, medians and their ratio."""

from __future__ import annotations

import json

import pytest

from engine.benches.common import interleave
from engine.benches.embed import PLAIN, median_rows
from engine.cli import main


def test_interleave_alternates_the_order_every_round() -> None:
    calls: list[str] = []
    cases = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    syncs: list[int] = []
    times = interleave(cases, rounds=3, warmup=1, sync=lambda: syncs.append(1))
    # warm-up a b, then round 0: a b, round 1: b a, round 2: a b
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for v in times.values() for t in v)
    assert len(syncs) == 1 + 6  # after the warm-up, then after every timed call


def test_median_rows_on_known_times() -> None:
    rows = median_rows({"plain": [4.0, 2.0, 6.0], "engine": [1.0, 1.0, 3.0]}, items=10, baseline="plain")
    plain, engine = rows
    assert plain["median_s"] == 4.0 and plain["vs_baseline"] == 1.0 and plain["items_per_s"] == 2.5
    assert engine["median_s"] == 1.0 and engine["items_per_s"] == 10.0
    assert engine["vs_baseline"] == 4.0  # ratio of the medians
    assert engine["round_ratio_median"] == 2.0  # per-round ratios 4, 2, 2
    assert engine["rounds"] == 3


@pytest.mark.slow
def test_bench_embed_prints_interleaved_medians(tmp_path, capsys) -> None:
    out = tmp_path / "embed.json"
    argv = ["bench", "embed", "--n", "48", "--rounds", "2", "--batch", "16", "--width", "0.0625"]
    assert main([*argv, "--device", "cpu", "--no-store", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "interleaved (2 rounds, medians)" in text and PLAIN in text
    assert "x the plain loop's img/s (ratio of medians)" in text
    res = json.loads(out.read_text())
    assert [r["rounds"] for r in res["throughput"]] == [2, 2]
    assert res["ratio"] == res["throughput"][1]["vs_baseline"] > 0
