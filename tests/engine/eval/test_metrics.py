"""Probes recover planted factors; displacement metrics match hand computations."""

from __future__ import annotations

import numpy as np

from engine.eval.metrics import (
    displacement_scores,
    eqgain,
    factor_probe,
    knn_eval,
    linear_probe,
    r2_score,
    rel_error,
    row_cos,
    top1_retrieval,
)


def _planted(n: int, seed: int):
    rng = np.random.default_rng(seed)
    f = rng.uniform(0, 1, n)
    x = rng.normal(size=(n, 20))
    x[:, 3] = 4 * f + 0.2 * rng.normal(size=n)  # factor linearly encoded along one axis, little noise
    return x, f


def test_factor_probe_recovers_planted_factor_not_random():
    xtr, ftr = _planted(800, 0)
    xte, fte = _planted(400, 1)
    assert factor_probe(xtr, ftr, xte, fte) > 0.9
    noise = np.random.default_rng(2)
    assert factor_probe(xtr, noise.uniform(size=800), xte, noise.uniform(size=400)) < 0.1


def test_circular_probe_handles_wraparound():
    rng = np.random.default_rng(0)
    hue = rng.uniform(0, 1, 1200)
    x = np.c_[np.cos(2 * np.pi * hue), np.sin(2 * np.pi * hue), rng.normal(size=(1200, 6))]
    assert factor_probe(x[:800], hue[:800], x[800:], hue[800:], period=1.0) > 0.95
    # The raw (non-circular) hue is not linear in these features.
    assert factor_probe(x[:800], hue[:800], x[800:], hue[800:]) < 0.9


def test_linear_probe_separable_vs_random():
    rng = np.random.default_rng(0)
    y = np.arange(600) % 3
    x = rng.normal(size=(600, 10)) + 3 * np.eye(10)[y]
    assert linear_probe(x[:400], y[:400], x[400:], y[400:]) > 0.95
    assert linear_probe(x[:400], rng.permutation(y[:400]), x[400:], y[400:]) < 0.6


def test_r2_hand_values():
    y = np.array([1.0, 2.0, 3.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(3, 2.0)) == 0.0


def test_displacement_metrics_hand_example():
    y0 = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    delta = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    yt = y0 + delta
    s = displacement_scores(y0, yt, yt)  # perfect prediction: cos 1, error 0, top-1 1
    assert s.cos == 1.0 and s.rel_err == 0.0 and s.top1 == 1.0
    np.testing.assert_allclose(s.invariance, np.mean([np.cos(np.pi / 4), 1 / np.sqrt(5)]))
    np.testing.assert_allclose(s.norm, 1.5)
    # Predicting "no change" gives rel err 1 and eqgain 0; the opposite displacement gives cos -1, err 2.
    np.testing.assert_allclose(rel_error(delta, np.zeros_like(delta)), [1.0, 1.0])
    np.testing.assert_allclose(eqgain(yt, y0, y0), [0.0, 0.0])
    np.testing.assert_allclose(row_cos(delta, -delta), [-1.0, -1.0])
    np.testing.assert_allclose(rel_error(delta, -delta), [2.0, 2.0])
    assert row_cos(np.zeros((1, 3)), delta[:1]).tolist() == [0.0]  # a zero row: 0, or what the caller asks
    assert np.isnan(row_cos(np.zeros((1, 3)), delta[:1], undefined=np.nan)).all()
    assert top1_retrieval(yt, yt[::-1]) == 0.0


def test_knn_eval_hand_computation():

    # Bank: two class-0 items near +x, one class-1 item at +y; query (0.6, 0.8) labelled 1, k=3.
    # T=0.1: class 0 weight exp(6.0)+exp(6.08) = 840 < class 1 weight exp(8.0) = 2981 -> predicts 1 (right).
    # T=1.0: class 0 weight e^0.6+e^0.608 = 3.66 > class 1 weight e^0.8 = 2.23 -> predicts 0 (wrong).
    bank = np.array([[1.0, 0.0], [1.0, 0.0133], [0.0, 1.0]])
    q, qy = np.array([[0.6, 0.8]]), np.array([1])
    assert knn_eval(bank, np.array([0, 0, 1]), q, qy, k=3, t=0.1) == 1.0
    assert knn_eval(bank, np.array([0, 0, 1]), q, qy, k=3, t=1.0) == 0.0
