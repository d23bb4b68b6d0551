"""The dataset registry: every loader by name, its splits and options, and ``load_dataset``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from engine.core.errors import ConfigError
from engine.data.dataset import ImageDataset
from engine.data.folders import load_imagefolder
from engine.data.shapes import load_shapes, load_shapes_colour, load_shapes_upright
from engine.data.torchvision_layouts import load_cifar10, load_cifar100, load_stl10

DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "shapes": load_shapes,
    "shapes_upright": load_shapes_upright,
    "shapes_colour": load_shapes_colour,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "stl10": load_stl10,
    "imagefolder": load_imagefolder,
}

# Generated datasets draw every item independently, so any prefix of a split is already a uniform sample of it.
# File-backed ones are often stored class by class (an ImageFolder, CIFAR-10's JPEG tree: the first 1,000 test
# images are all airplanes), so whoever samples them must draw indices (engine.train.data.load_run_data).
IN_RANDOM_ORDER: frozenset[str] = frozenset({"shapes", "shapes_upright", "shapes_colour"})

SPLITS: dict[str, tuple[str, ...]] = {
    "shapes": ("train", "test"),
    "shapes_upright": ("train", "test"),
    "shapes_colour": ("train", "test"),
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "stl10": ("train", "test", "unlabeled"),
    "imagefolder": ("train", "test", "val"),
}


def dataset_options(name: str) -> dict[str, object]:
    """Keyword options a dataset accepts (beyond split and root), with their defaults."""
    params = inspect.signature(get_loader(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def get_loader(name: str) -> Callable[..., ImageDataset]:
    """The registered loader, or ConfigError listing the choices."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}.") from None


def load_dataset(
    name: str, split: str = "train", root: str | Path | None = None, **options: object
) -> ImageDataset:
    """Load a registered dataset split.

    Args:
        name: a key of :data:`DATASETS`.
        split: ``train``/``test`` (``stl10`` also ``unlabeled``; ``imagefolder`` any sub-folder name).
        root: data folder for file-backed datasets (ignored by ``shapes``).
        **options: dataset options, e.g. ``size=``/``seed=`` for shapes, ``image_size=`` for imagefolder.

    Raises:
        ConfigError: unknown name, split or option. DataError: missing or unreadable files.
    """
    loader = get_loader(name)
    accepted = dataset_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"dataset {name!r} has no option(s) {unknown}; it accepts {sorted(accepted) or 'none'}."
        )
    return loader(split, root, **options)
