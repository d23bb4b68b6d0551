"""Post-hoc displacement predictor: fits a planted law, beats the shuffled control, round-trips to disk."""

from __future__ import annotations

import numpy as np
import pytest

from engine.displacement import (
    PosthocPredictor,
    fit_posthoc,
    load_predictor,
    save_predictor,
    score,
    shuffled_control,
)
from engine.errors import StoreError


def _planted(n: int, seed: int, d: int = 12):
    """delta depends on the parameters and (through one axis) on the image: delta = p A + z_0 * (p B)."""
    rng = np.random.default_rng(seed)
    law = np.random.default_rng(99)
    a, b = law.normal(size=(15, d)), law.normal(size=(15, d)) * 0.3
    z0 = rng.normal(size=(n, d))
    p = rng.normal(size=(n, 15)) * np.linspace(0.5, 3, 15) + 2.0
    pn = (p - 2.0) / np.linspace(0.5, 3, 15)
    zt = z0 + pn @ a + z0[:, :1] * (pn @ b)
    return z0, zt, p


def test_posthoc_recovers_planted_law_and_beats_shuffle():
    z0, zt, p = _planted(3000, 0)
    pred = fit_posthoc(z0, zt, p, "backbone", rank=4, alpha=1.0)
    tz0, tzt, tp = _planted(500, 1)
    real = score(tz0, tzt, tp, pred)
    assert real.cos > 0.95 and real.rel_err < 0.3 and real.top1 > 0.9 and real.eqgain > 0
    control = shuffled_control(tz0, tzt, tp, pred, np.random.default_rng(0))
    assert control.cos < real.cos - 0.5 and control.top1 < 0.2


def test_score_without_predictor_keeps_invariance_only():
    z0, zt, p = _planted(50, 2)
    s = score(z0, zt, p, None)
    assert np.isnan(s.cos) and np.isnan(s.top1) and -1 <= s.invariance <= 1 and s.norm > 0


def test_save_load_round_trip(tmp_path):
    z0, zt, p = _planted(400, 3)
    pred = fit_posthoc(z0, zt, p, "projector", rank=4)
    save_predictor(pred, tmp_path)
    back = load_predictor(tmp_path, "projector")
    assert isinstance(back, PosthocPredictor) and back.space == "projector"
    np.testing.assert_allclose(back(z0[:5], p[:5]), pred(z0[:5], p[:5]))
    with pytest.raises(StoreError, match="python -m engine eval"):
        load_predictor(tmp_path, "backbone")
