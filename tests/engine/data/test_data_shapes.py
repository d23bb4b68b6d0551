"""The generated ``shapes`` dataset: determinism, factor ranges/independence, cache keys, rendering."""

from __future__ import annotations

import re

import numpy as np
import pytest

from engine.augment.recipes import dataset_recipe, get_recipe
from engine.core.errors import ConfigError
from engine.data import FACTOR_RANGES, SHAPE_CLASSES, SYMMETRY, ShapeFactors, load_dataset, render_shape
from engine.data import shapes as shapes_mod
from engine.data.dataset import Arrays, cache_path
from engine.data.shapes import (
    COLOUR_PALETTE,
    ORIENTATIONS,
    PALETTE_WOBBLE,
    angle_mod_symmetry,
    generate,
    hsv_to_rgb,
    palette_index,
    rotation_ceiling,
    sample_factors,
)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUILAB_CACHE", str(tmp_path))
    return tmp_path / "data"


def test_same_seed_same_arrays_different_seed_different():
    a, b, c = generate(300, 0, "train"), generate(300, 0, "train"), generate(300, 1, "train")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert all(np.array_equal(a.meta[k], b.meta[k]) for k in a.meta)
    assert not np.array_equal(a.images, c.images)
    # train and test come from different streams of the same seed
    assert not np.array_equal(a.images, generate(300, 0, "test").images)


def test_factor_ranges_balance_and_independence():
    n = 1000
    d = generate(n, 3, "train")
    assert d.images.shape == (n, 32, 32, 3) and d.images.dtype == np.uint8
    assert np.array_equal(np.bincount(d.labels), np.full(len(SHAPE_CLASSES), n // len(SHAPE_CLASSES)))
    for k, (lo, hi) in FACTOR_RANGES.items():
        assert lo <= d.meta[k].min() and d.meta[k].max() <= hi, k
    # the sampler generate() uses, at full train size (sampling is cheap, rendering is not)
    n = 20_000
    labels, factors = sample_factors(n, np.random.default_rng(3))
    d = Arrays(images=np.zeros((n, 1, 1, 3), np.uint8), labels=labels, meta=factors)
    for k, (lo, hi) in FACTOR_RANGES.items():
        col = d.meta[k]
        assert col.shape == (n,) and lo <= col.min() and col.max() <= hi, k
        # uniform: each of 10 equal bins holds 10% +- 1.5% (binomial sd 0.2%)
        counts = np.histogram(col, bins=10, range=(lo, hi))[0]
        assert np.all(np.abs(counts / n - 0.1) < 0.015), (k, counts)
    cols = np.stack([d.meta[k] for k in FACTOR_RANGES] + [d.labels.astype(np.float32)])
    corr = np.corrcoef(cols) - np.eye(len(cols))
    assert np.abs(corr).max() < 0.04  # independent factors: no pair correlated
    per_class_hue = [d.meta["hue"][d.labels == c].mean() for c in range(len(SHAPE_CLASSES))]
    assert np.allclose(per_class_hue, 0.5, atol=0.03)


def test_symmetry_columns():
    d = generate(200, 0, "test")
    table = np.array([SYMMETRY[c] for c in SHAPE_CLASSES])
    assert np.array_equal(d.meta["symmetry"], table[d.labels])
    assert SYMMETRY["circle"] == 0 and SYMMETRY["square"] == 4 and SYMMETRY["triangle"] == 3
    assert SYMMETRY["arrow"] == SYMMETRY["L"] == SYMMETRY["T"] == 1
    assert len(SHAPE_CLASSES) >= 8
    got = angle_mod_symmetry(np.array([100.0, 100.0, 100.0, 100.0]), np.array([0, 1, 3, 4]))
    assert np.allclose(got, [0.0, 100.0, 100.0, 10.0])


def test_render_known_factors_centre_and_background():
    img = render_shape(ShapeFactors(shape="circle", hue=0.0, saturation=1.0, value=1.0, bg_value=0.0))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert tuple(img[16, 16]) == (255, 0, 0)
    assert tuple(img[0, 0]) == (0, 0, 0)
    green = render_shape(ShapeFactors(shape="square", hue=1 / 3, bg_hue=0.5, bg_value=0.2))
    assert tuple(green[16, 16]) == (0, 255, 0)
    bg = np.rint(hsv_to_rgb(np.float32(0.5), np.float32(0.35), np.float32(0.2)) * 255)
    assert tuple(green[0, 0]) == tuple(bg.astype(int))
    # anti-aliased edge: some pixels are strictly between background and shape colour
    assert np.any((green[..., 1] > bg[1] + 5) & (green[..., 1] < 250))


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_rotation_by_the_symmetry_period_is_invisible(name):
    order = SYMMETRY[name]
    base = render_shape(ShapeFactors(shape=name, angle=10.0)).astype(int)
    if order == 0:
        turned = render_shape(ShapeFactors(shape=name, angle=77.0)).astype(int)
        assert np.abs(base - turned).mean() < 1.0
        return
    same = render_shape(ShapeFactors(shape=name, angle=10.0 + 360.0 / order)).astype(int)
    assert np.abs(base - same).mean() < 1.0
    if order == 1:  # a shape without rotational symmetry looks different a quarter turn later
        other = render_shape(ShapeFactors(shape=name, angle=100.0)).astype(int)
        assert np.abs(base - other).mean() > 5.0


def test_rotation_is_counter_clockwise():
    up = render_shape(ShapeFactors(shape="arrow", angle=0.0))[..., 0].astype(float)
    left = render_shape(ShapeFactors(shape="arrow", angle=90.0))[..., 0].astype(float)
    rows, cols = np.indices(up.shape)
    # the arrow head holds more area than the shaft tip: mass shifts towards where it points
    assert (up * rows).sum() / up.sum() < 16.0
    assert (left * cols).sum() / left.sum() < 16.0
    assert np.abs(np.rot90(up) - left).mean() < 1.0  # np.rot90 turns counter-clockwise


def test_shape_always_visible_against_background():
    d = generate(500, 5, "train")
    corner = d.images[:, 0, 0, :].astype(int)  # the corner is background for every item
    diff = np.abs(d.images.astype(int) - corner[:, None, None, :]).max(axis=(1, 2, 3))
    assert diff.min() >= 50


def test_cache_hit_and_keys(cache, monkeypatch):
    a = load_dataset("shapes", "train", size=120, seed=4)
    assert isinstance(a.images, np.memmap) and not a.images.flags.writeable
    entries = sorted(cache.iterdir())
    assert len(entries) == 1
    b = load_dataset("shapes", "train", size=120, seed=4)
    assert sorted(cache.iterdir()) == entries
    assert np.array_equal(a.images, b.images) and np.array_equal(a.meta["angle"], b.meta["angle"])
    assert np.array_equal(np.asarray(a.images), generate(120, 4, "train").images)
    load_dataset("shapes", "train", size=120, seed=5)
    assert len(list(cache.iterdir())) == 2  # a new seed is a new file
    monkeypatch.setattr(shapes_mod, "GENERATOR_VERSION", shapes_mod.GENERATOR_VERSION + 1)
    c = load_dataset("shapes", "train", size=120, seed=4)
    assert len(list(cache.iterdir())) == 3  # a new generator version is a new file
    assert np.array_equal(a.images, c.images)
    assert cache_path("shapes", "train", {"seed": 1}) != cache_path("shapes", "test", {"seed": 1})


def test_default_sizes_and_dataset_record():
    assert shapes_mod.DEFAULT_SIZES == {"train": 20_000, "test": 5_000}
    d = load_dataset("shapes", "test", size=50)
    assert d.name == "shapes" and d.split == "test" and len(d) == 50
    assert d.labels.dtype == np.int64 and d.classes == SHAPE_CLASSES
    assert np.array_equal(d.meta["shape"], d.labels)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"split": "val"}, "choose from ['test', 'train']"),
        ({"size": 0}, "size=0"),
        ({"size": 2.5}, "size=2.5"),
        ({"seed": -1}, "seed=-1"),
        ({"colour": "red"}, "no option(s) ['colour']"),
    ],
)
def test_bad_options(kwargs, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_dataset("shapes", **kwargs)


def test_unknown_dataset_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown dataset 'mnist'; choose from \['cifar10', 'cifar100'"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="unknown shape"):
        render_shape(ShapeFactors(shape="blob"))


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_shapes_at_the_range_edges_are_not_clipped(name):
    def mass(x: float, y: float, angle: float) -> float:
        img = render_shape(ShapeFactors(shape=name, x=x, y=y, angle=angle, scale=1.0, bg_value=0.0))
        return float(img[..., 0].astype(np.float64).sum())  # red shape on black: total coverage

    lo, hi = FACTOR_RANGES["x"]
    for angle in (0.0, 45.0, 135.0, 250.0):
        centre = mass(16.0, 16.0, angle)
        for x, y in ((lo, lo), (hi, hi), (lo, hi), (hi, lo)):
            assert abs(mass(x, y, angle) - centre) < 0.01 * centre, (x, y, angle)


def test_upright_variant_keeps_a_canonical_orientation():
    up = load_dataset("shapes_upright", "test", size=200)
    uniform = load_dataset("shapes", "test", size=200)
    assert up.name == "shapes_upright" and up.classes == uniform.classes
    assert up.meta["angle"].min() >= -20.0 and up.meta["angle"].max() < 20.0
    assert uniform.meta["angle"].max() > 300.0
    np.testing.assert_array_equal(up.labels, uniform.labels)  # same stream: only the angles differ
    assert not np.array_equal(up.images, uniform.images)
    with pytest.raises(ConfigError, match="orientation='sideways' is unknown"):
        shapes_mod.load_shapes("test", size=10, orientation="sideways")


def test_rotation_ceiling_matches_a_monte_carlo_bayes_classifier():

    assert rotation_ceiling("uniform") == pytest.approx(0.25, abs=1e-3)  # uniform angles: chance
    rng = np.random.default_rng(0)
    lo, hi = ORIENTATIONS["upright"]
    accs = []
    for order in SYMMETRY.values():
        if order == 0:
            accs.append(0.25)
            continue
        a, r = rng.uniform(lo, hi, 400_000), rng.integers(0, 4, 400_000)
        bins = (np.mod(a + 90 * r, 360 / order) // 1.0).astype(int)  # observed angle, 1-degree bins
        counts = np.zeros((bins.max() + 1, 4))
        np.add.at(counts, (bins, r), 1)
        accs.append(counts.max(axis=1).sum() / len(a))  # the best guess per observed angle
    assert rotation_ceiling("upright") == pytest.approx(np.mean(accs), abs=0.01)
    assert 0.6 < rotation_ceiling("upright") < 0.65


def test_shapes_colour_draws_hues_from_the_palette_and_labels_the_colour_class():

    d = load_dataset("shapes_colour", "test", size=400)
    assert d.name == "shapes_colour" and set(np.unique(d.meta["colour_class"])) == set(range(COLOUR_PALETTE))
    for k in ("hue", "bg_hue"):  # every hue within the wobble of its entry's centre (j + 0.5) / K
        centre = (palette_index(d.meta[k], COLOUR_PALETTE) + 0.5) / COLOUR_PALETTE
        assert np.abs(d.meta[k] - centre).max() <= PALETTE_WOBBLE + 1e-6
    # colour cannot identify an instance: every (shape colour, background colour) pair is shared by many images
    pairs = palette_index(d.meta["hue"], 4) * 4 + palette_index(d.meta["bg_hue"], 4)
    assert np.bincount(pairs, minlength=16).min() >= 10
    # the recipe jitters hue at CIFAR strength, less than half a palette step: the colour class survives a view
    hue = get_recipe(dataset_recipe("shapes_colour")).hue
    assert hue == 0.1 and hue + PALETTE_WOBBLE < 0.5 / COLOUR_PALETTE
    plain = load_dataset("shapes", "test", size=400)
    assert "colour_class" not in plain.meta  # the default dataset and its cache key are unchanged
    with pytest.raises(ConfigError, match="palette"):
        load_dataset("shapes", "test", size=10, palette=1)
