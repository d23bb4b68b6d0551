"""Datasets: a registry of loaders that each return an :class:`ImageDataset` (uint8 images, labels, metadata).

``load_dataset("shapes")`` needs no files; the others read a data root (``root=`` / ``--data-root``, else
``$EQUILAB_DATA_ROOT``, else for ``cifar10`` the sibling ``../shared/data/cifar10-jpeg``). Nothing is ever
downloaded. Decoded and generated arrays are cached under ``engine.core.io.cache_dir()`` and memory-mapped.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from engine.core.errors import ConfigError
from engine.data.dataset import ROOT_ENV, ImageDataset, resolve_root
from engine.data.folders import load_imagefolder
from engine.data.images import DEFAULT_MAX_PIXELS, decode_image, to_square
from engine.data.shapes import (
    CLASSES as SHAPE_CLASSES,
)
from engine.data.shapes import (
    FACTOR_RANGES,
    SYMMETRY,
    ShapeFactors,
    angle_mod_symmetry,
    load_shapes,
    load_shapes_upright,
    render_shape,
)
from engine.data.torchvision_layouts import load_cifar10, load_cifar100, load_stl10

DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "shapes": load_shapes,
    "shapes_upright": load_shapes_upright,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "stl10": load_stl10,
    "imagefolder": load_imagefolder,
}

SPLITS: dict[str, tuple[str, ...]] = {
    "shapes": ("train", "test"),
    "shapes_upright": ("train", "test"),
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


__all__ = [
    "DATASETS",
    "DEFAULT_MAX_PIXELS",
    "FACTOR_RANGES",
    "ROOT_ENV",
    "SHAPE_CLASSES",
    "SPLITS",
    "SYMMETRY",
    "ImageDataset",
    "ShapeFactors",
    "angle_mod_symmetry",
    "dataset_options",
    "decode_image",
    "get_loader",
    "load_dataset",
    "render_shape",
    "resolve_root",
    "to_square",
]
