"""engine.augment: determinism, exact replay, parameter vectors and stats, rotate4, families, recipe checks."""

import dataclasses

import pytest
import torch

from engine.augment import (
    EQUIMOD_NAMES,
    FAMILIES,
    NORMALIZED_NAMES,
    RECIPES,
    Recipe,
    apply,
    augment,
    compose,
    equimod_vector,
    find_family,
    get_recipe,
    identity_params,
    identity_view,
    light_recipe,
    normalized_vector,
    param_stats,
    rotate4,
    sample_params,
    training_recipe,
)
from engine.core.errors import ConfigError
from engine.methods import build_method

HW = (32, 32)
# EquiMod's hard-coded CIFAR SimCLR z-score constants (docs/methods.md §2.3, src/main.py)
EQUIMOD_MEAN = [4.31, 4.32, 23.37, 23.37, 0.50, 0.80, 1.20, 1.40, 1.60, 1.80, 1.00, 1.00, 1.00, 0.00, 0.20]
EQUIMOD_STD = [3.97, 3.99, 4.95, 4.95, 0.50, 0.40, 1.17, 1.02, 1.02, 1.17, 0.21, 0.21, 0.21, 0.052, 0.40]


def _batch(n=8, seed=0):
    return torch.randint(
        0, 256, (n, 3, *HW), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def test_same_seed_same_views_and_params():
    x = _batch()
    for name in ("simclr", "byol_view2", "essl_rotation"):
        a, pa = augment(x, RECIPES[name], torch.Generator().manual_seed(7))
        b, pb = augment(x, RECIPES[name], torch.Generator().manual_seed(7))
        c, _ = augment(x, RECIPES[name], torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and torch.equal(pa.crop, pb.crop) and torch.equal(pa.order, pb.order)
        assert not torch.equal(a, c)


def test_replay_is_exact_and_output_in_range():
    x = _batch(16)
    for name, size in (("simclr", 32), ("byol_view2", 32), ("essl_rotation", 16)):
        views, p = augment(x, RECIPES[name], torch.Generator().manual_seed(1))
        assert views.shape == (16, 3, size, size) and views.dtype == torch.float32
        assert views.min() >= 0 and views.max() <= 1
        assert torch.equal(apply(x, p), views)
        assert torch.equal(apply(x.float() / 255, p), views)  # uint8 and float inputs are the same images


def test_identity_params_only_resize():
    x = _batch(4)
    assert torch.equal(apply(x, identity_params(4, HW, 32)), x.float() / 255)
    assert apply(x, identity_params(4, HW, 16)).shape == (4, 3, 16, 16)


def test_parameter_vector_layout_and_sampling_rates():
    p = sample_params(RECIPES["simclr"], 10_000, HW, torch.Generator().manual_seed(0))
    v = equimod_vector(p, HW)
    assert v.shape == (10_000, 15) and len(EQUIMOD_NAMES) == 15
    mean = v.mean(0)
    assert abs(mean[2] - 23.37) < 0.3 and abs(mean[3] - 23.37) < 0.3  # crop h, w in pixels
    assert abs(mean[4] - 0.5) < 0.02 and abs(mean[5] - 0.8) < 0.02 and abs(mean[14] - 0.2) < 0.02
    assert torch.equal(v[:, 6:10].sort(dim=1).values, torch.arange(4.0).expand(10_000, 4))  # a permutation
    off = v[:, 5] == 0  # jitter not applied: defaults
    assert torch.equal(v[off, 6:10], torch.arange(4.0).expand(int(off.sum()), 4))
    assert torch.equal(v[off, 10:14], torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(int(off.sum()), 4))
    on = ~off
    assert v[on, 10:13].min() >= 0.6 and v[on, 10:13].max() <= 1.4 and v[on, 13].abs().max() <= 0.1
    crop = p.crop
    assert (crop[:, 0] + crop[:, 2] <= 32).all() and (crop[:, 1] + crop[:, 3] <= 32).all()
    area = crop[:, 2] * crop[:, 3] / 1024
    assert area.min() >= 0.18 and area.max() <= 1.0  # scale 0.2..1 up to pixel rounding


def test_param_stats_close_to_equimod_constants():
    mean, std = param_stats(RECIPES["simclr"], HW)
    assert torch.allclose(mean, torch.tensor(EQUIMOD_MEAN), atol=0.05)
    assert torch.allclose(std, torch.tensor(EQUIMOD_STD), atol=0.05, rtol=0.02)
    mean2, std2 = param_stats(RECIPES["simclr"], HW)
    assert torch.equal(mean, mean2) and torch.equal(std, std2)  # fixed seed


def test_normalized_vector_layout():
    r = RECIPES["simclr"]
    p = sample_params(r, 2000, HW, torch.Generator().manual_seed(0))
    v = normalized_vector(p, r, HW)
    assert v.shape == (2000, len(NORMALIZED_NAMES)) == (2000, 32)
    assert v[:, :10].min() >= 0 and v[:, :10].max() <= 1  # crop fractions, flags, factors in [0, 1]
    onehot = v[:, 10:26].reshape(-1, 4, 4)
    assert torch.equal(onehot.sum(1), torch.ones(2000, 4)) and torch.equal(onehot.sum(2), torch.ones(2000, 4))
    ident = normalized_vector(identity_params(1, HW, 32), r, HW)[0]
    named = dict(zip(NORMALIZED_NAMES, ident.tolist(), strict=True))
    assert named["crop_height"] == 1
    assert named["brightness"] == pytest.approx(0.5) and named["hue"] == pytest.approx(0.5)
    assert named["rotation_cos"] == 1 and named["rotation_sin"] == 0 and named["order2_is_s"] == 1


def test_rotate4_labels_and_content():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x4, labels = rotate4(x)
    assert x4.shape == (12, 3, 8, 8) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for k in range(4):
        back = torch.rot90(x4[labels == k], -k, dims=(2, 3))
        assert torch.equal(back, x)
    # label 1 = a quarter turn counter-clockwise: the top-right pixel goes to the top-left
    assert x4[3, :, 0, 0].equal(x[0, :, 0, 7])


def test_rotation_param_quarter_turn_matches_rot90():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    p = dataclasses.replace(identity_params(2, (8, 8), 8), rotation=torch.tensor([90.0, 180.0]))
    out = apply(x, p)
    assert torch.allclose(out[0], torch.rot90(x[0], 1, dims=(1, 2)), atol=1e-5)
    assert torch.allclose(out[1], torch.rot90(x[1], 2, dims=(1, 2)), atol=1e-5)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_families_identity_at_neutral_and_change_elsewhere(name):
    fam = FAMILIES[name]
    x = _batch(3)
    base = apply(x, identity_params(3, HW, 32))
    assert torch.equal(apply(x, fam.params(fam.neutral, 3, HW, 32, "cpu")), base)
    assert fam.low <= fam.neutral <= fam.high and fam.neutral in fam.sweep
    far = next(s for s in fam.sweep if s != fam.neutral)  # e.g. rotation 45 (360 is the identity again)
    assert not torch.equal(apply(x, fam.params(far, 3, HW, 32, "cpu")), base)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_no_family_grid_holds_a_point_twice(name):
    """Each strength of a sweep is a distinct op: the identity once, no equal angles (rotation 0 and 360)."""
    fam = FAMILIES[name]
    assert sum(fam.same(s, fam.neutral) for s in fam.sweep) == 1
    assert sum(fam.same(s, fam.neutral) for s in fam.coarse) == 1
    for i, a in enumerate(fam.sweep):
        assert not any(fam.same(a, b) for b in fam.sweep[i + 1 :]), (name, a)
    assert all(fam.low <= s <= fam.high for s in fam.sweep) and set(fam.coarse) <= set(fam.sweep)
    if fam.period is not None:  # the ends of a circular range are the same op
        assert fam.same(fam.low, fam.high) or fam.same(fam.low + fam.period, fam.high)


def test_family_equivalence_and_clamp():
    rot, hue = FAMILIES["rotation"], FAMILIES["hue"]
    assert rot.same(0.0, 360.0) and rot.same(-90.0, 270.0) and not rot.same(0.0, 180.0)
    assert hue.same(-0.5, 0.5) and not FAMILIES["brightness"].same(1.0, 1.2)
    assert rot.clamp(-90.0) == 270.0 and rot.clamp(360.0) == 0.0 and hue.clamp(0.75) == -0.25
    assert FAMILIES["crop_scale"].clamp(0.08) == 0.2 and FAMILIES["blur"].clamp(3.0) == 2.0


def test_find_family_by_name_or_label():
    assert find_family("hue").name == "hue" and find_family("Hue shift").name == "hue"
    assert find_family("crop scale").name == "crop_scale" and find_family("rotation angle").name == "rotation"
    with pytest.raises(ConfigError, match="choose from"):
        find_family("nope")


def test_compose_sets_every_named_family_like_the_single_family_params():
    x = _batch(2)
    p = compose({"hue": 0.2, "brightness": 1.0, "flip": 1.0, "rotation": 90.0}, 2, HW, 32)
    assert p.jitter.tolist() == [
        True,
        True,
    ]  # a later neutral colour factor keeps the jitter of an earlier one
    assert p.flip.tolist() == [True, True] and p.hue.tolist() == pytest.approx([0.2, 0.2])
    one = FAMILIES["rotation"].apply_to(FAMILIES["flip"].params(1.0, 2, HW, 32), 90.0, HW)
    one = FAMILIES["hue"].apply_to(one, 0.2, HW)
    assert torch.equal(apply(x, p), apply(x, one))
    assert torch.equal(apply(x, compose({}, 2, HW, 32)), apply(x, identity_params(2, HW, 32)))


def test_recipes_by_name_size_and_training_recipe_of_a_method():

    assert get_recipe("simclr", 16).size == 16 and get_recipe("simclr") is RECIPES["simclr"]
    light = light_recipe(24)
    assert light.size == 24 and light.jitter_p == 0.0 and light.gray_p == 0.0 and light.scale == (0.6, 1.0)
    model = build_method("simclr", width=0.125, image_size=32, options={"recipe": "shapes"})
    assert training_recipe(model) == RECIPES["shapes"]
    assert training_recipe(build_method("none", width=0.125, image_size=16)) == get_recipe("simclr", 16)
    x = (torch.rand(2, 3, 20, 20) * 255).to(torch.uint8)
    assert torch.equal(identity_view(x, 16), apply(x, identity_params(2, (20, 20), 16)))


def test_bad_recipe_values_raise_config_error_naming_them():
    with pytest.raises(ConfigError, match="scale"):
        Recipe(scale=(0.0, 2.0))
    with pytest.raises(ConfigError, match="jitter_p"):
        dataclasses.replace(RECIPES["simclr"], jitter_p=1.5)
    with pytest.raises(ConfigError, match="interpolation"):
        Recipe(interpolation="lanczos")
    with pytest.raises(ConfigError, match="parameter rows"):
        apply(_batch(3), identity_params(2, HW, 32))


def test_crop_fallback_is_torchvisions_centre_box():
    # no attempt can fit (aspect >= 2 at full area), so every row takes get_params' fallback:
    # w = 32, h = round(32 / 2) = 16, centred -> (8, 0, 16, 32)
    r = Recipe(scale=(1.0, 1.0), ratio=(2.0, 3.0))
    p = sample_params(r, 50, HW, torch.Generator().manual_seed(0))
    assert torch.equal(p.crop, torch.tensor([8.0, 0.0, 16.0, 32.0]).expand(50, 4))
