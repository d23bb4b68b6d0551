"""Displacement: per-view scores by hand, the one batch API (displace), the post-hoc predictor (planted law,
shuffled control, round trip to disk), the scored-space rule and the evaluation's sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.augment import FAMILIES, cat_params, identity_params
from engine.core.errors import ConfigError, StoreError
from engine.data import load_dataset
from engine.eval.displacement import (
    SCORED_SPACES,
    PosthocPredictor,
    displace,
    displacement,
    fit_posthoc,
    load_predictor,
    resolve_predictor,
    sample_pairs,
    save_predictor,
    scored_space,
    sweep_grid,
)
from engine.eval.measures import Views, displacement_report, fit_reference
from engine.train.checkpoint import load_model
from engine.train.config import load_config
from engine.train.loop import fit


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


def test_displacement_scores_each_view_by_hand():
    z0 = np.array([1.0, 0.0])
    z = np.array([[1.0, 1.0], [1.0, 0.0]])  # delta = (0, 1), then no move
    z_hat = np.array([[2.0, 1.0], [1.0, 0.0]])  # delta_hat = (1, 1), then (0, 0)
    d = displacement(z0, z, z_hat, "post-hoc")
    np.testing.assert_allclose(d.actual, [[0.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(d.predicted, [[1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(d.norm, [1.0, 0.0])
    np.testing.assert_allclose(d.raw_cos, [1 / np.sqrt(2), 1.0])
    np.testing.assert_allclose(d.invariance, d.raw_cos)  # the deprecated name of the raw cosine
    assert d.rel_invariance is None
    assert d.cos[0] == pytest.approx(1 / np.sqrt(2)) and d.rel_err[0] == pytest.approx(1.0)
    assert np.isnan(d.cos[1]) and np.isnan(d.rel_err[1])  # no displacement: its direction is undefined
    none = displacement(z0, z)
    assert none.z_hat is None and none.predicted is None and none.predictor == "none"
    assert np.isnan(none.cos).all() and np.isnan(none.rel_err).all()


def test_scored_space_is_the_first_present():
    assert SCORED_SPACES == ("equivariant", "projector", "backbone")
    assert scored_space(["backbone", "projector", "equivariant"]) == "equivariant"
    assert scored_space(["backbone", "projector"]) == "projector"
    assert scored_space(["backbone", "rotation_logits"]) == "backbone" and scored_space([]) == "backbone"


def test_posthoc_recovers_planted_law_and_beats_shuffle():
    z0, zt, p = _planted(3000, 0)
    pred = fit_posthoc(z0, zt, p, "backbone", rank=4, alpha=1.0)
    tz0, tzt, tp = _planted(500, 1)
    rep = displacement_report(Views(z0, zt, p), Views(tz0, tzt, tp), pred)
    real, control = rep.scores["method"], rep.scores["shuffled_params"]
    assert real.cos > 0.95 and real.r2 > 0.9 and rep.retrieval["method"].hit1 > 0.9
    assert control.cos < real.cos - 0.5 and rep.retrieval["shuffled_params"].hit1 < 0.2


def test_sweep_grid_has_no_identity_and_no_repeated_op():
    for name, fam in FAMILIES.items():
        grid = sweep_grid(name)
        assert grid and not any(fam.same(s, fam.neutral) for s in grid), name
        assert all(not fam.same(a, b) for i, a in enumerate(grid) for b in grid[i + 1 :]), name
    assert 360.0 not in sweep_grid("rotation") and 0.0 not in sweep_grid("rotation")


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

    return torch.from_numpy(np.array(load_dataset("shapes", split, size=600).images[:n])).permute(0, 3, 1, 2)


def test_posthoc_beats_shuffled_control_on_shapes(trained):

    model, _ = trained
    g = torch.Generator().manual_seed(0)
    f0, ft, fp = sample_pairs(model, _uint8("train", 512), g)
    t0, tt, tp = sample_pairs(model, _uint8("test", 256), g)
    for space in ("backbone", "projector"):
        pred = fit_posthoc(f0[space], ft[space], fp, space)
        rep = displacement_report(Views(f0[space], ft[space], fp), Views(t0[space], tt[space], tp), pred)
        real, ctrl = rep.scores["method"], rep.scores["shuffled_params"]
        assert real.cos > ctrl.cos + 0.1, (space, real, ctrl)
        assert rep.retrieval["method"].mrr > rep.retrieval["shuffled_params"].mrr
    own, kind = resolve_predictor(model, "equivariant", None)
    assert kind == "equimod"
    fit, test = (Views(a["equivariant"], b["equivariant"], p) for a, b, p in ((f0, ft, fp), (t0, tt, tp)))
    rep = displacement_report(fit, test, own)
    assert rep.method == "model" and np.isfinite(rep.scores["method"].cos) and rep.n == 256


def test_displace_and_sweep(trained):
    model, _ = trained
    imgs = _uint8("test", 16)
    x01 = imgs[:1].float() / 255
    params = cat_params(
        [identity_params(1, (32, 32), 32, "cpu"), FAMILIES["rotation"].params(90.0, 1, (32, 32), 32, "cpu")]
    )
    ref = fit_reference(np.random.default_rng(0).normal(size=(50, model.config.y_dim)))
    d = displace(model, x01, params, "equivariant", ref=ref)  # one image broadcast over two views
    assert d.predictor == "equimod" and d.z.shape == d.z_hat.shape == d.z0.shape
    assert d.norm[0] < 1e-4 and d.raw_cos[0] > 0.999 and d.rel_invariance[0] > 0.999
    assert d.norm[1] > 1e-3 and -1 <= d.cos[1] <= 1 and d.views.shape == (2, 3, 32, 32)
    none = displace(model, imgs[:4], FAMILIES["hue"].params(0.3, 4, (32, 32), 32, "cpu"), "backbone")
    assert none.predicted is None and np.isnan(none.cos).all() and (none.norm > 0).all()
    with pytest.raises(ConfigError, match="choose from"):
        displace(model, imgs[:1], params, "nope")
