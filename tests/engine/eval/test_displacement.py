"""Post-hoc displacement predictor: fits a planted law, beats the shuffled control, round-trips to disk."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.errors import StoreError
from engine.eval.displacement import (
    PosthocPredictor,
    fit_posthoc,
    load_predictor,
    save_predictor,
    score,
    shuffled_control,
)


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


# ---------------------------------------------------------------- with a small trained EquiMod on shapes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from engine.train.checkpoint import load_model
    from engine.train.config import load_config
    from engine.train.loop import fit

    out = tmp_path_factory.mktemp("equimod") / "run"
    tiny = [
        "data.options.size=600",
        "data.train_subset=384",
        "data.knn_bank=256",
        "data.knn_queries=128",
        "optim.batch_size=64",
        "optim.epochs=1",
        "optim.warmup_epochs=0.5",
        "model.width=0.0625",
        "model.method=equimod",
        "train.knn_every=0",
        "train.device=cpu",
        f"train.out={out}",
    ]
    run = fit(load_config(None, tiny))
    return load_model(run)[0], run


def _uint8(split: str, n: int):
    import torch

    from engine.data import load_dataset

    return torch.from_numpy(np.array(load_dataset("shapes", split, size=600).images[:n])).permute(0, 3, 1, 2)


def test_posthoc_beats_shuffled_control_on_shapes(trained):
    import torch

    from engine.eval.displacement import resolve_predictor, sample_pairs

    model, _ = trained
    g = torch.Generator().manual_seed(0)
    f0, ft, fp = sample_pairs(model, _uint8("train", 512), g)
    t0, tt, tp = sample_pairs(model, _uint8("test", 256), g)
    rng = np.random.default_rng(0)
    for space in ("backbone", "projector"):
        pred = fit_posthoc(f0[space], ft[space], fp, space)
        real, ctrl = (
            score(t0[space], tt[space], tp, pred),
            shuffled_control(t0[space], tt[space], tp, pred, rng),
        )
        assert real.cos > ctrl.cos + 0.1 and real.top1 > ctrl.top1, (space, real, ctrl)
    own, kind = resolve_predictor(model, "equivariant", None)
    assert kind == "equimod"
    s = score(t0["equivariant"], tt["equivariant"], tp, own)
    assert np.isfinite(s.cos) and s.n == 256


def test_displacement_for_and_sweep(trained):
    import torch

    from engine.augment import FAMILIES, identity_params
    from engine.eval.displacement import displacement_for, sweep

    model, _ = trained
    imgs = _uint8("test", 16)
    x01 = imgs[0].float() / 255
    ident = displacement_for(model, x01, identity_params(1, (32, 32), 32, "cpu"), "equivariant")
    assert ident.norm < 1e-4 and ident.invariance > 0.999 and ident.predictor == "equimod"
    rot = displacement_for(
        model, x01, FAMILIES["rotation"].params(90.0, 1, (32, 32), 32, "cpu"), "equivariant"
    )
    assert rot.norm > 1e-3 and rot.predicted.shape == rot.actual.shape and -1 <= rot.cos <= 1
    none = displacement_for(model, x01, FAMILIES["hue"].params(0.3, 1, (32, 32), 32, "cpu"), "backbone")
    assert none.predicted is None and np.isnan(none.cos)
    res = sweep(model, imgs, "brightness", [1.0, 1.5], "equivariant")
    assert res.norm.shape == (2,) and res.norm[0] < 1e-4 < res.norm[1] and res.invariance[0] > 0.999
    del torch
