"""Config defaults, YAML + key=value overrides, errors; the lr schedule and LARS against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from engine.core.errors import ConfigError
from engine.train.config import build_config, from_dict, load_config, peak_lr, to_dict, to_yaml
from engine.train.optim import LARS, build_optimizer, lr_at, scaled_lr


def test_defaults_per_dataset_and_method() -> None:
    shapes = build_config({"method": "simclr"})
    assert (shapes.model.width, shapes.optim.batch_size, shapes.data.dataset) == (0.125, 128, "shapes")
    cifar = build_config({"dataset": "cifar10", "method": "essl"})
    o = cifar.optim
    assert (cifar.model.width, o.batch_size, o.epochs, o.lr, o.momentum, o.weight_decay, o.warmup_epochs) == (
        1.0,
        512,
        800,
        0.03,
        0.9,
        5e-4,
        10.0,
    )
    assert peak_lr(cifar) == pytest.approx(0.03 * 512 / 256 * 2)  # E-SSL doubles the base lr (§1.4)
    assert peak_lr(build_config({"dataset": "cifar10"})) == pytest.approx(0.06)


def test_overrides_dotted_flat_yaml_and_precedence(tmp_path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  method: equimod\n  width: 0.25\noptim:\n  lr: 0.5\nepochs: 7\n")
    cfg = load_config(
        f, ["optim.lr=0.1", "batch_size=64", "model.options.temperature=0.3", "train.amp=false"]
    )
    assert cfg.model.method == "equimod" and cfg.model.width == 0.25 and cfg.optim.epochs == 7
    assert cfg.optim.lr == 0.1 and cfg.optim.batch_size == 64  # flags beat the file
    # shapes (the default dataset) adds its augmentation recipe to methods that take one
    assert cfg.model.options == {"temperature": 0.3, "recipe": "shapes"} and cfg.train.amp is False
    assert from_dict(yaml.safe_load(to_yaml(cfg))) == cfg  # config.yaml round-trips
    assert from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("optim.batch_size=0", ["optim.batch_size", "[1,"]),
        ("optim.lr=.nan", ["optim.lr", "finite", "[1e-08, 100.0]"]),
        ("optim.lr=-.inf", ["optim.lr", "finite", "[1e-08, 100.0]"]),
        ("optim.batch_size=.inf", ["optim.batch_size", "integer", "[1, 1048576]"]),
        ("batch_size=-4", ["optim.batch_size", "[1, 1048576]"]),
        ("model.width=-1", ["model.width", "[0.03, 4.0]"]),
        ("model.width=.nan", ["model.width", "[0.03, 4.0]"]),
        ("model.options.recipe=[]", ["model.options", "recipe"]),  # a list where a name belongs
        ("model.options.proj_dim=.inf", ["model.options", "proj_dim"]),  # int(inf) overflows inside
        ("optim.nonsense=1", ["optim.nonsense", "allowed keys"]),
        ("lr=-0.1", ["optim.lr", "range"]),
        ("model.width=0", ["model.width", "0.03"]),
        ("epochs=0", ["optim.epochs", "range"]),
        ("epochs=2.5", ["optim.epochs", "integer"]),
        ("method=byol", ["model.method", "simclr"]),
        ("dataset=mnist", ["data.dataset", "shapes"]),
        ("optimizer=adam", ["optim.optimizer", "lars"]),
        ("device=tpu", ["train.device", "cuda"]),
        ("nonsense=1", ["nonsense", "optim.lr"]),
        ("model.options.bogus=1", ["bogus", "temperature"]),
        ("model.options.temperature=0", ["temperature", "range"]),
        ("amp=maybe", ["train.amp", "true or false"]),
        ("no_equals_sign", ["key=value"]),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(override: str, names: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    for n in names:
        assert n in str(e.value)


def test_bad_yaml_file(tmp_path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    binary = tmp_path / "photo.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x80\xff")  # not UTF-8 text
    with pytest.raises(ConfigError, match=r"cannot read config file .*photo\.yaml"):
        load_config(binary)


def test_frozen() -> None:
    cfg = build_config()
    with pytest.raises(AttributeError):
        cfg.optim.lr = 1.0  # type: ignore[misc]


def test_schedule_hand_values() -> None:
    peak = scaled_lr(0.03, 512, 2.0)
    assert peak == pytest.approx(0.12)
    warm, total = 10, 110
    assert lr_at(0, peak, warm, total) == 0.0
    assert lr_at(5, peak, warm, total) == pytest.approx(0.06)  # linear: peak * 5/10
    assert lr_at(10, peak, warm, total) == pytest.approx(0.12)  # cosine starts at the peak
    assert lr_at(60, peak, warm, total) == pytest.approx(0.06)  # half-way: peak * (1 + cos(pi/2)) / 2
    assert lr_at(35, peak, warm, total) == pytest.approx(0.12 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, peak, warm, total) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(110, peak, warm, total, final_ratio=0.001) == pytest.approx(0.12e-3)
    assert lr_at(0, peak, 0, total) == pytest.approx(peak)  # no warm-up


def test_lars_trust_ratio_and_excluded_bias() -> None:
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
        lin.bias.fill_(1.0)
    opt = build_optimizer("lars", lin, lr=1.0, momentum=0.9, weight_decay=0.0)
    assert isinstance(opt, LARS) and [g["weight_decay"] for g in opt.param_groups] == [0.0, 0.0]
    lin.weight.grad = torch.tensor([[0.0, 2.0]])  # ||g|| = 2 -> trust 1e-3 * 5 / 2
    lin.bias.grad = torch.tensor([0.5])  # excluded: plain SGD step
    opt.step()
    assert torch.allclose(lin.weight, torch.tensor([[3.0, 4.0 - 2.0 * 2.5e-3]]))
    assert torch.allclose(lin.bias, torch.tensor([0.5]))


def test_sgd_applies_weight_decay_everywhere() -> None:
    lin = torch.nn.Linear(2, 1)
    opt = build_optimizer("sgd", lin, lr=0.1, momentum=0.9, weight_decay=5e-4)
    assert isinstance(opt, torch.optim.SGD) and all(g["weight_decay"] == 5e-4 for g in opt.param_groups)


def test_shapes_recipe_is_the_default_only_for_methods_that_take_one() -> None:
    assert build_config({"dataset": "shapes", "method": "equimod"}).model.options == {"recipe": "shapes"}
    assert build_config({"dataset": "shapes", "method": "rotation"}).model.options == {}
    assert build_config({"dataset": "cifar10", "method": "simclr"}).model.options == {}
    assert (
        build_config({"method": "clever", "model.options.recipe": "simclr"}).model.options["recipe"]
        == "simclr"
    )
    with pytest.raises(ConfigError, match=r"'recipe'.*'nope'.*choose from"):
        build_config({"method": "simclr", "model.options.recipe": "nope"})
