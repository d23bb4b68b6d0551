"""DataSpec: one frozen, JSON-able record of a dataset variant and split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.core.errors import ConfigError
from engine.data import DataSpec, load_dataset


def test_round_trip_freeze_and_hash():
    spec = DataSpec("shapes", "test", None, {"size": 40, "seed": 3})
    d = spec.to_dict()
    assert d == {"name": "shapes", "split": "test", "root": None, "options": {"seed": 3, "size": 40}}
    assert DataSpec.from_dict(json.loads(json.dumps(d))) == spec
    assert hash(DataSpec.from_dict(d)) == hash(spec) and len({spec, DataSpec.from_dict(d)}) == 1
    with pytest.raises(TypeError):
        spec.options["size"] = 1  # read-only
    with pytest.raises(AttributeError):
        spec.split = "train"  # frozen


def test_load_with_split_and_same_items():
    spec = DataSpec("shapes", "train", options={"size": 30, "seed": 3})
    data = spec.with_split("test").load()
    want = load_dataset("shapes", "test", size=30, seed=3)
    assert data.split == "test" and np.array_equal(data.images, want.images)
    assert not np.array_equal(data.images, load_dataset("shapes", "test", size=30).images)
    assert spec.same_items(DataSpec("shapes", "train", "/elsewhere", {"seed": 3, "size": 30}))
    assert not spec.same_items(spec.with_split("test")) and not spec.same_items(DataSpec("shapes", "train"))


@pytest.mark.parametrize("bad", [None, {}, {"split": "test"}, {"name": 3}, {"name": "shapes", "root": 5}])
def test_malformed_dicts_are_config_errors(bad):
    with pytest.raises(ConfigError, match="data spec"):
        DataSpec.from_dict(bad)


def test_unknown_option_fails_on_load():
    with pytest.raises(ConfigError, match="no option"):
        DataSpec("shapes", options={"colour": "red"}).load()
