"""engine.lab.image: crop boxes, sweeps, seeded random values, linear bases and displacement metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.core.errors import ConfigError
from engine.lab.image import (
    SWEEPS,
    SliderValues,
    crop_box,
    displacement_basis,
    displacement_metrics,
    random_values,
    sweep_values,
)


def test_crop_box_centre_and_clamping():
    assert crop_box(SliderValues(), (32, 32)) == (0.0, 0.0, 32.0, 32.0)
    assert crop_box(SliderValues(crop_area=0.25), (32, 32)) == (8.0, 8.0, 16.0, 16.0)
    # centre in the corner: box clamped inside the image
    assert crop_box(SliderValues(crop_area=0.25, crop_cx=0.0, crop_cy=1.0), (32, 32)) == (
        16.0,
        0.0,
        16.0,
        16.0,
    )
    with pytest.raises(ConfigError, match="crop_area"):
        crop_box(SliderValues(crop_area=0.0), (32, 32))


def test_sweep_values_spreads_only_the_swept_field():
    base = SliderValues(brightness=1.3)
    grid, vals = sweep_values(base, "hue shift", n=5)
    assert grid.tolist() == [-0.5, -0.25, 0.0, 0.25, 0.5]
    assert [v.hue for v in vals] == grid.tolist()
    assert all(v.brightness == 1.3 for v in vals)
    assert set(SWEEPS) >= {"hue shift", "crop scale", "rotation angle"}
    with pytest.raises(ConfigError, match="choose from"):
        sweep_values(base, "nope")


def test_random_values_are_seeded():
    assert random_values(3) == random_values(3)
    assert random_values(3) != random_values(4)
    v = random_values(3)
    assert 0.08 <= v.crop_area <= 1.0 and -0.1 <= v.hue <= 0.1


def test_store_pca_basis_recovers_the_dominant_plane():
    # The lab draws its arrows in the store's PCA plane (engine.store.projection.pca, fitted at store build).
    from engine.lab.image import Basis2D
    from engine.store.projection import pca

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


def test_displacement_metrics_hand_computed():
    z0 = np.array([1.0, 0.0])
    z1 = np.array([1.0, 1.0])  # delta = (0, 1)
    zh = np.array([2.0, 1.0])  # delta_hat = (1, 1)
    m = displacement_metrics(z0, z1, zh)
    assert m.norm == pytest.approx(1.0)
    assert m.cos == pytest.approx(1 / math.sqrt(2))
    assert m.rel_err == pytest.approx(1.0)
    assert m.invariance == pytest.approx(1 / math.sqrt(2))
    m2 = displacement_metrics(z0, z1)
    assert math.isnan(m2.cos) and math.isnan(m2.rel_err)


def test_compose_params_reproduces_the_sliders_through_the_shared_pipeline():
    import torch

    from engine.augment import apply, identity_params
    from engine.lab.image import compose_params

    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ident = compose_params(SliderValues(), (32, 32), 32)
    assert torch.equal(apply(img, ident), apply(img, identity_params(1, (32, 32), 32, "cpu")))
    p = compose_params(
        SliderValues(crop_area=0.25, flip=True, hue=0.2, gray=True, rotation=30.0), (32, 32), 16
    )
    assert p.crop.tolist() == [[8.0, 8.0, 16.0, 16.0]]
    assert p.flip.tolist() == [True] and p.jitter.tolist() == [True] and p.gray.tolist() == [True]
    assert p.hue.tolist() == pytest.approx([0.2]) and p.rotation.tolist() == [30.0] and p.size == 16
    out = apply(img, p)
    assert out.shape == (1, 3, 16, 16) and torch.allclose(out[:, 0], out[:, 1])  # grayscale: equal channels


def test_displacement_scores_are_zero_at_the_neutral_strength_and_positive_away_from_it():
    import torch

    from engine.lab.image import displacement_scores
    from engine.methods import build_method

    torch.manual_seed(0)
    model = build_method("none", width=0.125, image_size=32).eval()
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    norm, cos = displacement_scores(model, images, "hue", 0.0, "backbone", batch=4)
    assert norm.shape == (6,) and np.allclose(norm, 0.0, atol=1e-5) and np.allclose(cos, 1.0, atol=1e-5)
    norm, cos = displacement_scores(model, images, "hue", 0.4, "backbone", batch=4)
    assert (norm > 0).all() and (cos < 1.0).all()
    with pytest.raises(ConfigError, match="choose from"):
        displacement_scores(model, images, "nope", 1.0, "backbone")
