"""Property tests (hypothesis): configs, the train CLI's validation and augmentation parameters never fail with
anything but a clear error, and every accepted input gives a valid result.

* config: random keys and values -> a valid Config or a ConfigError naming the key (never another exception);
* CLI: values that fail validation -> exit code 2 and one ``error:`` line naming the key and what is allowed
  (nothing here reaches training: every case is rejected by the config layer first);
* augmentation: every family over its whole strength range and random valid recipes -> finite views in [0, 1]
  of the right shape.
"""

from __future__ import annotations

import contextlib
import io
import math
import string

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.augment import FAMILIES, Recipe, apply, augment
from engine.cli import main
from engine.core.errors import ConfigError
from engine.core.values import RANGES
from engine.methods import METHODS
from engine.train.config import (
    Config,
    all_keys,
    build_config,
    from_dict,
    load_config,
    to_dict,
    to_yaml,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest and does not thrash on a busy machine (20x measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = sorted(all_keys())
BARE = sorted({k.split(".", 1)[1] for k in KEYS})
OPTION_NAMES = ["temperature", "recipe", "lr_scale", "weight", "pred_dim", "proj_dim", "nope"]

names = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=20)
keys = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(BARE),
    names,
    st.builds(
        lambda s, n: f"{s}.options.{n}", st.sampled_from(["model", "data"]), st.sampled_from(OPTION_NAMES)
    ),
    st.builds(lambda s, n: f"{s}.{n}", st.sampled_from(["data", "model", "optim", "train"]), names),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from([*sorted(METHODS), "shapes", "cifar10", "sgd", "lars", "cpu", "auto"]),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=3), st.dictionaries(st.sampled_from(OPTION_NAMES), scalars)
)


def _named(message: str, overrides: dict) -> bool:
    """Does ``message`` name one of the override keys (as given, canonical, or its last part)?"""
    for k in overrides:
        forms = {k, k.strip().lstrip("-").replace("-", "_"), k.rsplit(".", 1)[-1].replace("-", "_")}
        if any(f and f in message for f in forms):
            return True
    return False


def _valid(cfg: Config) -> None:
    """Every numeric field of an accepted config is finite and inside its documented range."""
    flat = {f"{s}.{k}": v for s, sec in to_dict(cfg).items() for k, v in sec.items()}
    options = {f"model.options.{k}": v for k, v in cfg.model.options.items()}  # only those set are present
    for key, (lo, hi) in RANGES.items():
        if key in flat or key in options:
            assert lo <= {**flat, **options}[key] <= hi, (key, {**flat, **options}[key])
    for key, v in flat.items():
        if isinstance(v, float):
            assert math.isfinite(v), key
    assert cfg.model.method in METHODS
    assert to_yaml(from_dict(to_dict(cfg))) == to_yaml(cfg)  # what a run writes to config.yaml reloads


@FUZZ
@given(st.dictionaries(keys, values, max_size=4))
def test_build_config_gives_a_config_or_a_config_error_naming_the_key(overrides: dict) -> None:
    try:
        cfg = build_config(overrides)
    except ConfigError as e:
        assert _named(str(e), overrides), (str(e), overrides)
        assert "\n" not in str(e)
        return
    _valid(cfg)


@FUZZ
@given(st.dictionaries(keys, values, max_size=4), st.lists(st.tuples(keys, st.text(max_size=10)), max_size=3))
def test_load_config_from_yaml_and_override_strings(tmp_path_factory, doc: dict, items: list) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    overrides = [f"{k}={v}" for k, v in items]
    try:
        cfg = load_config(path, overrides)
    except ConfigError as e:
        assert _named(str(e), {**doc, **dict(items)}) or "key=value" in str(e), (str(e), doc, items)
        return
    _valid(cfg)


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_load_config_from_arbitrary_file_bytes(tmp_path_factory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "raw.yaml"
    path.write_bytes(raw)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        assert str(path) in str(e) or "key" in str(e) or "option" in str(e) or "must" in str(e), str(e)
        return
    _valid(cfg)


# ---- the train CLI: inputs that validation must refuse (so no training starts) ------------------------------

bad_numbers = st.one_of(
    st.builds(
        lambda v: ("optim.batch_size", v, "[1,"), st.integers(max_value=0) | st.integers(min_value=2**21)
    ),
    st.builds(
        lambda v: ("optim.lr", v, "1e-08"), st.sampled_from([".nan", ".inf", "-.inf", "0", "-1", "1e9"])
    ),
    st.builds(lambda v: ("model.width", v, "0.03"), st.sampled_from(["0", "-0.5", "1e3", ".nan", "4.5"])),
    st.builds(lambda v: ("optim.epochs", v, "[1,"), st.sampled_from(["0", "-3", "2.5", ".nan", "ten"])),
    st.builds(
        lambda v: ("optim.momentum", v, "0.999"), st.floats(min_value=1.0, exclude_min=True) | st.just(-1)
    ),
    st.builds(lambda v: ("train.knn_t", v, "0.0001"), st.sampled_from(["0", "-1", "1e6", ".nan"])),
)
bad_choices = st.one_of(
    st.builds(lambda v: ("model.method", v, "simclr"), names.filter(lambda s: s not in METHODS)),
    st.builds(
        lambda v: ("data.dataset", v, "cifar10"), names.filter(lambda s: s not in {"shapes", "cifar10"})
    ),
    st.builds(lambda v: ("optim.optimizer", v, "lars"), names.filter(lambda s: s not in {"sgd", "lars"})),
    # (a name starting with "-" is an unknown *flag*: argparse prints its usage and exits 2 on its own)
    st.builds(lambda k: (k, "1", "optim.lr"), names.filter(lambda s: not s.startswith("-"))),
)


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def _is_unknown_key(key: str) -> bool:
    try:
        build_config({key: 1})
    except ConfigError as e:
        return "unknown config key" in str(e)
    return False


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(bad_numbers, bad_choices), st.sampled_from(["positional", "flag", "named"]))
def test_cli_refuses_bad_values_with_one_line_naming_key_and_range(tmp_path, case, form) -> None:
    key, value, allowed = case
    if allowed == "optim.lr" and not _is_unknown_key(key):  # a random name that happens to be a real key
        return
    argv = ["train", "--out", str(tmp_path / "never-written"), "--no-progress"]
    flags = {"model.method": "--method", "data.dataset": "--dataset"}
    if form == "named" and key in flags:
        argv += [
            f"{flags[key]}={value}"
        ]  # the = form: a value may start with "-" (argparse would take it as a flag)
    elif form == "flag" and "." in key:
        argv += [f"--{key}={value}"]
    else:
        argv += [f"{key}={value}"]
    rc, err = _cli(argv)
    assert rc == 2, (argv, err)
    line = err.strip()
    assert line.startswith("error: ") and "\n" not in line, err
    named = key.strip().lstrip("-").replace("-", "_")
    assert named in line and allowed in line, (argv, line)
    assert not (tmp_path / "never-written").exists()  # refused before any run directory was made


# ---- augmentation ----------------------------------------------------------------------------------------

images = st.builds(
    lambda h, w, b, seed: torch.randint(
        0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    ),
    st.integers(8, 40),
    st.integers(8, 40),
    st.integers(1, 3),
    st.integers(0, 2**31),
)


def _views_ok(views: torch.Tensor, n: int, size: int) -> None:
    assert views.shape == (n, 3, size, size) and views.dtype == torch.float32
    assert torch.isfinite(views).all()
    assert views.min() >= 0.0 and views.max() <= 1.0


@FUZZ
@given(st.sampled_from(sorted(FAMILIES)), st.floats(0.0, 1.0), images, st.integers(2, 40))
def test_every_family_over_its_whole_range_gives_finite_views(name, t, imgs, size) -> None:
    fam = FAMILIES[name]
    strength = fam.low + t * (fam.high - fam.low)
    hw = (int(imgs.shape[-2]), int(imgs.shape[-1]))
    params = fam.params(strength, len(imgs), hw, size)
    assert len(params) == len(imgs) and params.size == size
    _views_ok(apply(imgs, params), len(imgs), size)
    if strength == fam.neutral:  # the neutral strength is the identity: the plain resize
        plain = apply(imgs, FAMILIES["flip"].params(0.0, len(imgs), hw, size))
        torch.testing.assert_close(apply(imgs, params), plain)


# Output sides >= 2, input sides >= 8, aspect ratios in [1/4, 4]: below that the pipeline itself breaks (size 1
# + blur: reflect padding RuntimeError; a 4 px image with ratio 1/8: a zero-width crop and NaN views), reported
# to engine/augment's owner rather than fixed here.
unit = st.floats(0.0, 1.0)
pair = st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(sorted).map(tuple)
recipes = st.builds(
    Recipe,
    size=st.integers(2, 48),
    scale=pair,
    ratio=st.tuples(st.floats(0.25, 4.0), st.floats(0.25, 4.0)).map(sorted).map(tuple),
    interpolation=st.sampled_from(["bilinear", "bicubic"]),
    flip_p=unit,
    jitter_p=unit,
    brightness=st.floats(0.0, 5.0),
    contrast=st.floats(0.0, 5.0),
    saturation=st.floats(0.0, 5.0),
    hue=st.floats(0.0, 0.5),
    gray_p=unit,
    blur_p=unit,
    sigma=st.tuples(st.floats(0.01, 5.0), st.floats(0.01, 5.0)).map(sorted).map(tuple),
    solarize_p=unit,
    rotations=st.lists(st.floats(-720.0, 720.0), max_size=4).map(tuple),
)


@FUZZ
@given(recipes, images, st.integers(0, 2**31))
def test_random_recipes_give_finite_views_and_replayable_params(recipe, imgs, seed) -> None:
    views, params = augment(imgs, recipe, torch.Generator().manual_seed(seed))
    _views_ok(views, len(imgs), recipe.size)
    for name in ("crop", "brightness", "contrast", "saturation", "hue", "sigma", "rotation"):
        assert torch.isfinite(getattr(params, name).float()).all(), name
    torch.testing.assert_close(apply(imgs, params, recipe.interpolation), views)  # replay is exact


@FUZZ
@given(
    st.sampled_from(["size", "flip_p", "brightness", "hue", "scale", "sigma", "interpolation", "gray_p"]),
    # Huge strengths are left out: Recipe accepts brightness=inf or 1e38 and rotations=(nan,), which give NaN
    # views (engine/augment/recipes.py has no upper bounds; reported to its owner, not fixed here).
    st.one_of(st.floats(-1e6, 1e6) | st.just(math.nan), st.integers(-5, 0), st.text(max_size=4), st.none()),
)
def test_bad_recipe_values_are_config_errors_naming_the_field(field, value) -> None:
    if field in ("scale", "sigma"):
        value = (value, value)
    try:
        Recipe(**{field: value})
    except ConfigError as e:
        assert f"{field}=" in str(e)
        return
    # accepted: it must then be a usable value (e.g. brightness=0 or a hue of 0)
    views, _ = augment(
        torch.zeros(1, 3, 8, 8, dtype=torch.uint8), Recipe(**{field: value}), torch.Generator()
    )
    assert torch.isfinite(views).all()
