"""engine.lab.image: crop boxes, sweeps from the families table, random views from a model's recipe, linear bases,
the lab's displacements (through engine.eval.displacement.displace) and the multi-model sweep."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.augment import FAMILIES, RECIPES, apply, identity_params, sample_params
from engine.core.errors import ConfigError
from engine.lab.image import (
    Basis2D,
    SliderValues,
    compose_params,
    crop_box,
    displacement_basis,
    lab_views,
    random_values,
    slider_values,
    sweep_models,
    sweep_values,
)
from engine.methods import build_method
from engine.store.projection import pca


def test_crop_box_centre_and_clamping():
    assert crop_box(SliderValues(), (32, 32)) == (0.0, 0.0, 32.0, 32.0)
    assert crop_box(SliderValues(crop_scale=0.25), (32, 32)) == (8.0, 8.0, 16.0, 16.0)
    # centre in the corner: box clamped inside the image
    assert crop_box(SliderValues(crop_scale=0.25, crop_cx=0.0, crop_cy=1.0), (32, 32)) == (
        16.0,
        0.0,
        16.0,
        16.0,
    )
    with pytest.raises(ConfigError, match="crop_scale"):
        crop_box(SliderValues(crop_scale=0.0), (32, 32))


def test_slider_values_are_the_families_table():
    fields = {f.name: f.default for f in dataclasses.fields(SliderValues)}
    assert set(FAMILIES) <= set(fields) and set(fields) - set(FAMILIES) == {"crop_cx", "crop_cy"}
    for name, fam in FAMILIES.items():
        assert float(fields[name]) == fam.neutral, name


def test_sweep_values_spread_only_the_swept_family_over_its_grid():
    base = SliderValues(brightness=1.3)
    grid, vals = sweep_values(base, "hue")
    assert grid.tolist() == list(FAMILIES["hue"].sweep)
    assert [v.hue for v in vals] == grid.tolist()
    assert all(v.brightness == 1.3 for v in vals)
    assert sweep_values(base, "rotation angle")[0].tolist() == list(FAMILIES["rotation"].sweep)  # label works
    assert [v.flip for v in sweep_values(base, "flip")[1]] == [False, True]
    with pytest.raises(ConfigError, match="choose from"):
        sweep_values(base, "nope")


def test_random_values_are_drawn_from_the_models_recipe():
    hw = (32, 32)
    simclr, shapes = RECIPES["simclr"], RECIPES["shapes"]
    assert random_values(simclr, hw, 3) == random_values(simclr, hw, 3)
    assert random_values(simclr, hw, 3) != random_values(simclr, hw, 4)
    assert random_values(simclr, hw, 3, n=3)[1] == random_values(simclr, hw, 4)[0]  # view i: seed + i
    cifar = random_values(simclr, hw, 0, n=200)
    wide = random_values(shapes, hw, 0, n=200)
    assert all(abs(v.hue) <= 0.1 + 1e-6 and 0.2 - 1e-6 <= v.crop_scale <= 1.0 for v in cifar)
    assert max(abs(v.hue) for v in wide) > 0.3  # shapes models were trained with hue over the whole circle
    assert min(v.brightness for v in wide) < 0.5
    for v in cifar + wide:  # every value fits its slider
        for name, s in v.strengths().items():
            assert FAMILIES[name].low <= s <= FAMILIES[name].high, (name, s)


def test_slider_values_read_back_sampled_params():
    hw = (32, 32)
    p = sample_params(RECIPES["shapes"], 1, hw, torch.Generator().manual_seed(5))
    v = slider_values(p, hw)
    top, left, h, w = p.crop[0].tolist()
    assert v.crop_scale == pytest.approx(h * w / 1024) and v.crop_cx == pytest.approx((left + w / 2) / 32)
    assert v.crop_cy == pytest.approx((top + h / 2) / 32)
    assert v.flip == bool(p.flip[0]) and v.grayscale == bool(p.gray[0])
    if bool(p.jitter[0]):
        assert v.hue == pytest.approx(float(p.hue[0])) and v.brightness == pytest.approx(
            float(p.brightness[0])
        )
    # shown through the sliders: composing the read-back values sets the same strengths
    q = compose_params(v, hw, 32)
    assert q.hue.tolist() == pytest.approx([v.hue]) and q.flip.tolist() == [v.flip]


def test_store_pca_basis_recovers_the_dominant_plane():
    # The lab draws its arrows in the store's PCA plane (engine.store.projection.pca, fitted at store build).

    rng = np.random.default_rng(0)
    x = np.zeros((200, 5))
    x[:, 2] = rng.normal(size=200) * 10  # largest variance on axis 2
    x[:, 4] = rng.normal(size=200) * 3  # second on axis 4
    x[:, 0] = rng.normal(size=200) * 0.1
    fit = pca(x + 7.0, 2)
    b = Basis2D(origin=fit.mean, axes=fit.components, name="store PCA 1-2")
    assert b.axes[0][2] > 0 and np.allclose(np.abs(b.axes[0]), [0, 0, 1, 0, 0], atol=0.05)
    assert np.allclose(np.abs(b.axes[1]), [0, 0, 0, 0, 1], atol=0.05)
    assert np.allclose(b.axes @ b.axes.T, np.eye(2))
    # projection is linear: the displacement of a point projects to the projected displacement
    p, d = x[0] + 7.0, np.array([0, 0, 2.0, 0, 1.0])
    assert np.allclose(b.project(p + d) - b.project(p), b.axes @ d)


def test_displacement_basis_first_axis_is_the_mean_displacement():
    rng = np.random.default_rng(1)
    cloud = rng.normal(size=(100, 4)) * np.array([1, 5, 1, 1])
    deltas = np.array([[2.0, 0, 0, 0], [4.0, 0, 0, 0]])
    b = displacement_basis(deltas, cloud)
    assert np.allclose(b.axes[0], [1, 0, 0, 0])
    assert abs(b.axes[0] @ b.axes[1]) < 1e-9 and np.isclose(np.linalg.norm(b.axes[1]), 1)
    assert abs(b.axes[1][1]) > 0.9  # the cloud's main direction orthogonal to axis 1
    with pytest.raises(ConfigError, match="PCA basis"):
        displacement_basis(np.zeros((2, 4)), cloud)


def test_compose_params_reproduces_the_sliders_through_the_shared_pipeline():

    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ident = compose_params(SliderValues(), (32, 32), 32)
    assert torch.equal(apply(img, ident), apply(img, identity_params(1, (32, 32), 32, "cpu")))
    p = compose_params(
        SliderValues(crop_scale=0.25, flip=True, hue=0.2, grayscale=True, rotation=30.0), (32, 32), 16
    )
    assert p.crop.tolist() == [[8.0, 8.0, 16.0, 16.0]]
    assert p.flip.tolist() == [True] and p.jitter.tolist() == [True] and p.gray.tolist() == [True]
    assert p.hue.tolist() == pytest.approx([0.2]) and p.rotation.tolist() == [30.0] and p.size == 16
    out = apply(img, p)
    assert out.shape == (1, 3, 16, 16) and torch.allclose(out[:, 0], out[:, 1])  # grayscale: equal channels


def _model(method: str = "none"):
    torch.manual_seed(0)
    return build_method(method, width=0.125, image_size=32).eval()


def test_lab_views_are_the_slider_views_and_their_displacements():
    model = _model()
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    values = [SliderValues(), SliderValues(hue=0.3), SliderValues(crop_scale=0.5, flip=True)]
    res = lab_views(model, image, values, "backbone")
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    want = torch.cat([apply(x, compose_params(v, (32, 32), 32)) for v in values]).numpy()
    np.testing.assert_array_equal(res.views, want)
    assert res.z.shape == (3, res.z0.shape[1]) and res.predictor == "none" and res.z_hat is None
    assert res.norm[0] < 1e-5 and (res.norm[1:] > 0).all() and np.isnan(res.cos).all()
    np.testing.assert_allclose(res.actual, res.z - res.z0)
    with pytest.raises(ConfigError, match="projector"):
        lab_views(model, image, values, "projector")


def test_sweep_models_reports_a_model_without_the_space_instead_of_switching_space():
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    curves = sweep_models(
        {"a": _model("simclr"), "b": _model("none")}, image, SliderValues(), "hue", "projector"
    )
    a, b = curves
    assert a.error == "" and a.strengths.tolist() == list(FAMILIES["hue"].sweep) and a.model == "a"
    assert np.isfinite(a.norm).all() and a.norm[list(a.strengths).index(0.0)] < 1e-5
    assert b.error.startswith("b: ") and "projector" in b.error and np.isnan(b.norm).all()
    z = np.linalg.norm(lab_views(_model("simclr"), image, [SliderValues()], "projector").z0[0])
    np.testing.assert_allclose(a.rel_norm, a.norm / z, rtol=1e-6)  # scale-free: comparable across models


def test_sweep_draws_no_cos_for_a_family_no_predictor_is_told():
    """EquiMod's own predictor (its equivariant space) gets cos on hue, which its 15-d parameter vector encodes,
    and none on rotation, which it does not: the prediction there is a guess from the identity's parameters."""
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    model = _model("equimod")
    (hue,) = sweep_models({"e": model}, image, SliderValues(), "hue", "equivariant")
    (rot,) = sweep_models({"e": model}, image, SliderValues(), "rotation", "equivariant")
    assert np.isfinite(hue.cos).any() and np.isnan(rot.cos).all()
    assert (rot.norm > 0).any()  # rotation still moves the embedding: only the prediction is withheld
