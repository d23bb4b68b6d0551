"""engine.lab.predictors: the lab's predictors and baselines, fitted once per (store, space) and cached beside it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.augment import FAMILIES
from engine.data import load_dataset
from engine.eval.displacement import ViewSet, store_reference, sweep_views
from engine.lab.gainmaps import ensure_gain, gain_path
from engine.lab.image import SliderValues, default_strength, family_gain, lab_predictions
from engine.lab.predictors import cache_paths, ensure_predictors, fit_images, fit_space
from engine.methods import build_method
from engine.store.format import StoreArrays, StoreOptions, open_store, write_store

N = 40


@pytest.fixture(scope="module")
def simclr_store(tmp_path_factory):
    """An untrained SimCLR model and its store of N shapes test images (train split: N shapes train images)."""
    torch.manual_seed(0)
    model = build_method("simclr", width=0.125, image_size=32).eval()
    ds = load_dataset("shapes", "test", size=N)
    images = np.array(ds.images)
    with torch.no_grad():
        out = model.embed(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)
    source = {"checkpoint": "fixture", "method": "simclr", "dataset": "shapes", "split": "test"}
    source["dataset_options"] = {"size": N}
    arrays = StoreArrays(
        embeddings={k: v.numpy() for k, v in out.items() if v.ndim == 2},
        labels=np.asarray(ds.labels, dtype=np.int64),
        classes=tuple(ds.classes),
        images=images,
        meta={},
    )
    path = write_store(tmp_path_factory.mktemp("lab") / "store", arrays, source, StoreOptions(umap=False))
    return model, open_store(path), images


def test_fitted_once_then_read_from_beside_the_store(simclr_store):
    model, store, _ = simclr_store
    calls: list[str] = []
    first = ensure_predictors(store, model, "projector", lambda f, m: calls.append(m), n_fit=N, n_sweep=4)
    assert calls and first.kind == "post-hoc" and first.fit_on == "shapes/train"
    npz, meta = cache_paths(store.path, "projector")
    assert npz.is_file() and meta.is_file() and cache_paths(store.path, "backbone")[0].is_file()
    stamp = npz.stat().st_mtime_ns
    calls.clear()
    again = ensure_predictors(store, model, "projector", lambda f, m: calls.append(m), n_fit=N, n_sweep=4)
    assert calls == [] and npz.stat().st_mtime_ns == stamp  # read, not refitted
    z0 = np.asarray(store.embeddings("projector"))[:5]
    p = np.random.default_rng(0).normal(size=(5, 15))
    groups = [("hue", 0.25)] * 5
    a, b = first.predict(z0, p, groups), again.predict(z0, p, groups)
    assert set(a) == {"method", "mean_delta", "params_only", "image_only"}
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-12)
    assert json.loads(meta.read_text())["groups"]  # plain JSON: no pickle anywhere

    other = ensure_predictors(store, model, "projector", lambda f, m: calls.append(m), n_fit=N, n_sweep=2)
    assert calls and other.n_fit < first.n_fit  # other settings: refitted


def test_a_changed_store_refits(simclr_store, tmp_path):
    model, store, _ = simclr_store
    ensure_predictors(store, model, "backbone", n_fit=N, n_sweep=2)
    manifest = store.path / "manifest.json"
    text = manifest.read_text()
    try:
        manifest.write_text(text + "\n")  # any change to the manifest is a rebuilt store
        calls: list[str] = []
        ensure_predictors(store, model, "backbone", lambda f, m: calls.append(m), n_fit=N, n_sweep=2)
        assert calls
    finally:
        manifest.write_text(text)


def test_an_embedding_linear_in_the_parameters_is_predicted_by_the_parameters_alone():
    """Constructed case: Δ = A p exactly (no image dependence) -> the parameters-only baseline has cos ≈ 1."""
    rng = np.random.default_rng(0)
    n, d = 400, 12
    a = rng.normal(size=(15, d))
    p = rng.normal(size=(n, 15))
    z0 = rng.normal(size=(n, d))
    views = ViewSet({"backbone": z0}, {"backbone": z0 + p @ a}, p, None)
    lp = fit_space(build_method("none", width=0.125, image_size=32), views, "backbone", "constructed")
    p_test, z_test = rng.normal(size=(50, 15)), rng.normal(size=(50, d))
    pred = lp.predict(z_test, p_test)
    cos = np.sum((p_test @ a) * pred["params_only"], axis=1) / (
        np.linalg.norm(p_test @ a, axis=1) * np.linalg.norm(pred["params_only"], axis=1)
    )
    assert cos.min() > 0.99
    assert lp.kind == "post-hoc"


def test_lab_views_carry_both_baselines_and_not_encoded_families_get_no_prediction(simclr_store):
    model, store, images = simclr_store
    lp = ensure_predictors(store, model, "projector", n_fit=N, n_sweep=4)
    ref = store_reference(store, "projector")
    res = lab_predictions(
        model, images[3], [SliderValues(hue=0.3), SliderValues(rotation=90.0)], "projector", lp, ref
    )
    assert res.groups == (
        ("hue", 0.25),
        ("rotation", 90.0),
    )  # nearest fitted strength of the one family moved
    assert res.not_encoded == ((), ("rotation",))
    for name in ("method", "mean_delta", "params_only"):
        assert np.isfinite(res.cos[name][0]), name
    assert np.isnan(res.cos["method"][1]) and np.isnan(res.cos["params_only"][1])
    assert np.isfinite(res.cos["mean_delta"][1])  # the group's mean displacement still knows rotation 90°
    assert np.isfinite(res.disp.rel_invariance).all() and res.disp.rel_invariance[0] < 1.0


def test_every_strength_the_lab_sweeps_has_its_own_mean_displacement(simclr_store):
    """The lab's sweep draws each family at every strength of ``fam.sweep``; the mean-displacement guess at each
    must be that strength's own mean (rotation 45° is not 90°'s), i.e. the mean Δ of exactly those views."""
    model, store, _ = simclr_store
    lp = ensure_predictors(store, model, "projector", n_fit=N, n_sweep=4)
    for name, fam in FAMILIES.items():
        for s in fam.sweep:
            if not fam.same(s, fam.neutral):
                assert lp.group_of({name: s}) == (name, float(s)), (name, s)
    train, where = fit_images(store, N, 0)
    assert where == "shapes/train"
    at45 = sweep_views(model, train[:4], ["rotation"], full=True).views("projector")
    rows = [i for i, g in enumerate(at45.groups) if g == ("rotation", 45.0)]
    want = (at45.zt[rows] - at45.z0[rows]).mean(axis=0)
    z0 = np.asarray(store.embeddings("projector"))[:1]
    got = lp.predict(z0, np.zeros((1, 15)), [("rotation", 45.0)])["mean_delta"][0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hw", [(32, 32), (24, 64), (64, 20)])
def test_no_augmentation_gives_exactly_zero_displacement_for_any_aspect(simclr_store, hw):
    model, store, _ = simclr_store
    lp = ensure_predictors(store, model, "projector", n_fit=N, n_sweep=4)
    image = np.random.default_rng(1).integers(0, 256, (*hw, 3), dtype=np.uint8)
    res = lab_predictions(
        model, image, [SliderValues()], "projector", lp, store_reference(store, "projector")
    )
    assert res.disp.norm[0] == 0.0 and not res.moved(0)
    assert res.disp.rel_invariance[0] == 1.0
    assert all(np.isnan(c[0]) for c in res.cos.values())  # nothing to predict


def test_map_gain_is_the_method_minus_the_strongest_baseline(simclr_store):
    model, store, images = simclr_store
    lp = ensure_predictors(store, model, "projector", n_fit=N, n_sweep=4)
    g = family_gain(model, images, "hue", 0.25, "projector", lp, store_reference(store, "projector"))
    assert g.strongest in ("mean_delta", "params_only", "image_only") and not g.reason
    np.testing.assert_allclose(g.gain, g.cos["method"] - g.cos[g.strongest])
    assert np.nanmean(g.cos[g.strongest]) >= max(np.nanmean(g.cos[k]) for k in ("mean_delta", "params_only"))
    rot = family_gain(model, images, "rotation", 90.0, "projector", lp)
    assert "not encoded" in rot.reason and np.isnan(rot.gain).all() and (rot.norm > 0).any()


class _ValueOnly(torch.nn.Module):
    """The model seeing each pixel's value max(r, g, b), which a hue rotation keeps, plus a term 1e-9 of the
    image's mean (which it changes) in float64: a hue shift moves the embedding by rounding-sized amounts only."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.image_size = inner, inner.image_size

    def embed(self, x):
        out = self.inner.embed(x.amax(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous())
        wobble = 1e-9 * x.double().mean(dim=(1, 2, 3))[:, None]
        return {k: v.double() + wobble if v.ndim == 2 else v for k, v in out.items()}


def test_map_gain_is_undefined_where_only_rounding_moves(simclr_store):
    """Displacements at rounding level count as zero on the map as in the lab (1e-6 of the embeddings' RMS
    norm, not of Δ's own): no cos, no gain, and the reason says the embedding ignores the augmentation."""
    model, store, images = simclr_store
    lp = ensure_predictors(store, model, "projector", n_fit=N, n_sweep=4)
    g = family_gain(_ValueOnly(model), images, "hue", 0.25, "projector", lp)
    assert g.norm.max() > 0  # rounding moved something ...
    assert "displacement is zero" in g.reason and np.isnan(g.gain).all()  # ... and it is not read as a signal


def test_map_colouring_is_computed_once_then_read_from_beside_the_store(simclr_store):
    model, store, images = simclr_store
    lp = ensure_predictors(store, model, "projector", n_fit=N, n_sweep=4)
    want = family_gain(model, images, "hue", 0.3, "projector", lp, store_reference(store, "projector"))
    path = gain_path(store.path, "projector", "hue", 0.3)
    path.unlink(missing_ok=True)
    first = ensure_gain(store, model, "hue", 0.3, "projector", lp)
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    again = ensure_gain(store, model, "hue", 0.3, "projector", lp)
    assert path.stat().st_mtime_ns == stamp  # read, not recomputed
    for got in (first, again):
        assert (got.strongest, got.reason) == (want.strongest, want.reason)
        np.testing.assert_allclose(got.gain, want.gain, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got.norm, want.norm, rtol=1e-6, atol=1e-6)
        assert set(got.cos) == set(want.cos)
    path.write_bytes(b"not an npz")  # a corrupt cache is recomputed and rewritten, never trusted
    np.testing.assert_allclose(
        ensure_gain(store, model, "hue", 0.3, "projector", lp).norm, want.norm, rtol=1e-6
    )
    assert path.stat().st_size > 100
    ensure_predictors(store, model, "projector", n_fit=N, n_sweep=2)  # new predictors: the map is stale
    stamp = path.stat().st_mtime_ns
    ensure_gain(
        store,
        model,
        "hue",
        0.3,
        "projector",
        ensure_predictors(store, model, "projector", n_fit=N, n_sweep=2),
    )
    assert path.stat().st_mtime_ns != stamp


def test_default_strengths_are_never_the_identity():
    assert default_strength("rotation") == 180.0
    assert default_strength("crop_scale") == 0.2
    assert default_strength("flip") == 1.0
