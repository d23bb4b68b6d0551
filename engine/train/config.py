"""Training configuration: frozen dataclasses, per-(method, dataset) defaults, YAML files and ``key=value`` overrides.

Keys are dotted ``section.field`` (``optim.lr=0.1``, ``model.width=0.25``, ``model.options.temperature=0.2``); a
bare field name (``epochs=10``) works when it names exactly one field. Values are parsed as YAML scalars
(``true``, ``null``, ``1e-3``, ``[512, 128]``). Precedence: defaults < ``--config file.yaml`` < overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.augment.recipes import DATASET_RECIPES
from engine.core.errors import ConfigError
from engine.core.values import coerce
from engine.data import DATASETS
from engine.methods import METHODS, method_config
from engine.train.optim import scaled_lr


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "shapes"
    root: str | None = None  # data root for file-backed datasets (--data-root)
    options: dict = field(default_factory=dict)  # extra load_dataset options (shapes: size=, seed=)
    train_subset: int = 0  # train on the first N items of a seeded permutation (0 = all)
    knn_bank: int = 5000  # un-augmented train items in the kNN memory bank
    knn_queries: int = 2000  # test items queried by the kNN monitor


@dataclass(frozen=True)
class ModelConfig:
    method: str = "simclr"
    backbone: str = "resnet18_cifar"
    width: float = 1.0  # ResNet channel multiplier (1.0 = paper)
    image_size: int = 0  # view side in pixels (0 = the dataset's image side)
    options: dict = field(default_factory=dict)  # method hyper-parameters (engine.methods.method_config)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "sgd"  # sgd | lars
    lr: float = 0.03  # base lr; peak = lr * batch_size / 256 * method lr_scale
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 10.0
    epochs: int = 800
    batch_size: int = 512  # global batch (split across DDP ranks)
    final_lr_ratio: float = 0.0  # cosine ends at final_lr_ratio * peak


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast (CUDA only)
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the model
    checkpoint_every: int = 10  # keep epoch_XXXX checkpoints every N epochs (last is saved every epoch)
    knn_every: int = 10  # kNN monitor every N epochs (0 = never; always after the last epoch when > 0)
    knn_k: int = 200
    knn_t: float = 0.1
    log_every: int = 20  # steps between metrics.jsonl step records
    online_linear: bool = (
        False  # linear classifier on detached backbone features, logged per epoch (engine.train.online)
    )
    out: str = ""  # run directory ("" = runs/<method>-<dataset>)


@dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()


SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}

# Defaults per dataset (paper settings for CIFAR, docs/methods.md §1.4; CPU-friendly for the generated shapes).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "shapes": {
        "model.width": 0.125,
        "data.train_subset": 5000,
        "data.knn_bank": 2000,
        "data.knn_queries": 1000,
        "optim.batch_size": 128,
        "optim.epochs": 20,
        "optim.warmup_epochs": 2.0,
        # Short CPU schedules need a larger step than the 800-epoch papers' 0.03 (peak 0.015 at batch 128
        # left SimCLR's shapes kNN at 0.14 after 15 epochs).
        "optim.lr": 0.5,
        "train.knn_every": 5,
        "train.checkpoint_every": 5,
        "train.log_every": 10,
    },
    "cifar10": {},
    "cifar100": {},
    "stl10": {"model.backbone": "resnet18", "model.image_size": 64},
    "imagefolder": {"model.backbone": "resnet18"},
}
DATASET_DEFAULTS["shapes_upright"] = dict(DATASET_DEFAULTS["shapes"])  # same images, canonical orientation
DATASET_DEFAULTS["shapes_colour"] = dict(DATASET_DEFAULTS["shapes"])  # same images, palette hues
# Allowed choices of the string fields; numeric ranges are in engine.core.values.RANGES (shared with the methods).
CHOICES: dict[str, tuple[str, ...]] = {
    "optim.optimizer": ("sgd", "lars"),
    "train.device": ("auto", "cpu", "cuda"),
    "data.dataset": tuple(sorted(DATASETS)),
    "model.method": tuple(sorted(METHODS)),
}


def _coerce(key: str, value: Any, default: Any, type_name: str) -> Any:
    """One field's value, checked by :func:`engine.core.values.coerce` (choices, kinds, ranges)."""
    return coerce(key, value, default, choices=CHOICES.get(key), nullable="None" in type_name)


def all_keys() -> dict[str, type]:
    """Every dotted key -> its field's declared type string."""
    return {f"{s}.{f.name}": f.type for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


def resolve_key(key: str) -> str:
    """Canonical dotted key for ``key`` (dotted or a unique bare field name); ``model.options.X`` passes through."""
    key = key.strip().lstrip("-").replace("-", "_")
    keys = all_keys()
    if key in keys or key.startswith(("model.options.", "data.options.")):
        return key
    matches = [k for k in keys if k.split(".", 1)[1] == key]
    if len(matches) == 1:
        return matches[0]
    hint = f"ambiguous, write one of {matches}" if matches else f"allowed keys: {sorted(keys)}"
    raise ConfigError(f"unknown config key {key!r}; {hint} (method options: model.options.<name>)")


def parse_value(text: str) -> Any:
    """A ``key=value`` override's value, parsed as a YAML scalar/list (``0.1``, ``true``, ``null``, ``[1, 2]``)."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.1", "epochs=5"]`` -> ``{"optim.lr": 0.1, "optim.epochs": 5}`` (canonical keys)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. optim.lr=0.1)")
        key, text = item.split("=", 1)
        out[resolve_key(key)] = parse_value(text)
    return out


def flatten_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file (nested ``section: {field: value}`` or dotted keys) -> canonical flat overrides."""
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError) as e:  # ValueError: not UTF-8 text
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(doc).__name__}")
    flat: dict[str, Any] = {}
    for k, v in doc.items():
        if k in SECTIONS and isinstance(v, dict):
            flat.update({resolve_key(f"{k}.{f}"): x for f, x in v.items()})
        else:
            flat[resolve_key(str(k))] = v
    return flat


def method_takes(method: str, option: str) -> bool:
    """Whether method ``method``'s config has option ``option``."""
    cls = METHODS.get(method)
    return cls is not None and option in {f.name for f in dataclasses.fields(cls.Config)}


def build_config(overrides: dict[str, Any] | None = None) -> Config:
    """Defaults for the chosen method and dataset, then ``overrides`` (canonical or bare keys), validated."""
    overrides = {resolve_key(k): v for k, v in (overrides or {}).items()}
    method = _coerce("model.method", overrides.get("model.method", ModelConfig.method), None, "str")
    dataset = _coerce("data.dataset", overrides.get("data.dataset", DataConfig.dataset), None, "str")
    merged = {**DATASET_DEFAULTS.get(dataset, {}), **overrides}
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in merged.items():
        section, name = key.split(".", 1)
        if "." in name:  # model.options.temperature / data.options.size
            sub, opt = name.split(".", 1)
            values[section].setdefault(sub, {})[opt] = value
            continue
        f = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        coerced = _coerce(key, value, default, str(f.type))
        values[section][name] = (
            {**values[section].get(name, {}), **coerced} if isinstance(coerced, dict) else coerced
        )
    if dataset in DATASET_RECIPES and method_takes(method, "recipe"):  # after overrides, in either key form
        values["model"]["options"] = {
            "recipe": DATASET_RECIPES[dataset],
            **values["model"].get("options", {}),
        }
    cfg = Config(**{s: SECTIONS[s](**v) for s, v in values.items()})

    try:
        method_config(cfg.model.method, cfg.model.options)  # ConfigError for unknown/bad method options
    except (TypeError, ValueError, OverflowError) as e:  # a value of the wrong kind (a list, inf ...)
        raise ConfigError(
            f"model.options {cfg.model.options!r} are invalid for method {cfg.model.method!r} "
            f"({type(e).__name__}: {e}); see `python -m engine train --help`"
        ) from e
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    """``build_config`` from a YAML file (optional) and overrides (``key=value`` strings or a dict)."""
    flat = flatten_yaml(path) if path else {}
    extra = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    return build_config({**flat, **{resolve_key(k): v for k, v in extra.items()}})


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild (and re-validate) a config from ``to_dict`` output, e.g. a run's config.yaml or a checkpoint."""
    flat = {f"{s}.{k}": v for s, sec in d.items() for k, v in (sec or {}).items()}
    return build_config(flat)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def peak_lr(cfg: Config) -> float:
    """Peak learning rate: ``lr * batch / 256 * method lr_scale``."""

    scale = getattr(method_config(cfg.model.method, cfg.model.options), "lr_scale", 1.0)
    return scaled_lr(cfg.optim.lr, cfg.optim.batch_size, scale)
