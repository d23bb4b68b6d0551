"""One table of ranges and one coercion function serve the trainer's config and the methods' options."""

from __future__ import annotations

import pytest
import torch

from engine.core.device import resolve_device
from engine.core.errors import ConfigError
from engine.core.values import RANGES, coerce
from engine.methods import build_method, method_config
from engine.train.config import build_config


def test_width_range_is_the_same_for_the_config_and_build_method() -> None:
    lo, hi = RANGES["model.width"]
    for bad in (lo / 2, hi * 2):
        with pytest.raises(ConfigError, match=str(lo)):
            build_config({"model.width": bad})
        with pytest.raises(ConfigError, match=str(lo)):
            build_method("none", width=bad)
    assert build_config({"model.width": lo}).model.width == lo


def test_method_options_use_the_table() -> None:
    lo, hi = RANGES["model.options.temperature"]
    assert method_config("simclr", {"temperature": hi}).temperature == hi
    with pytest.raises(ConfigError, match=rf"'temperature' of method 'simclr'.*\[{lo}, {hi}\]"):
        method_config("simclr", {"temperature": hi * 2})
    with pytest.raises(ConfigError, match="temperature"):
        build_config({"model.options.temperature": hi * 2})


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [(3, 1.0, 3.0), (2.0, 1, 2), (512, (2048,), (512,)), ([1, 2], (2048,), (1, 2)), (True, False, True)],
)
def test_coerce_converts_to_the_default_kind(value, default, expected) -> None:
    out = coerce("some.key", value, default)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(
    ("value", "default"),
    [
        (float("inf"), 1.0),
        (float("nan"), 1),
        (2.5, 1),
        (-1, 1),
        (True, 1),
        ("x", 1.0),
        (1, False),
        ([0], (1,)),
    ],
)
def test_coerce_rejects_naming_the_key(value, default) -> None:
    with pytest.raises(ConfigError, match=r"some\.key"):
        coerce("some.key", value, default)


def test_coerce_choices_and_null() -> None:
    assert coerce("k", "b", "a", choices=("a", "b")) == "b"
    with pytest.raises(ConfigError, match="choose from"):
        coerce("k", "c", "a", choices=("a", "b"))
    assert coerce("k", None, None, nullable=True) is None
    with pytest.raises(ConfigError, match="string"):
        coerce("k", 3, None, nullable=True)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
