"""Datasets: a registry of loaders that each return an :class:`ImageDataset` (uint8 images, labels, metadata),
and :class:`DataSpec`, the one record of which dataset variant and split a stage reads.

``load_dataset("shapes")`` needs no files; the others read a data root (``root=`` / ``--data-root``, else
``$EQUILAB_DATA_ROOT``, else for ``cifar10`` the sibling ``../shared/data/cifar10-jpeg``). Nothing is ever
downloaded. Decoded and generated arrays are cached under ``engine.core.io.cache_dir()`` and memory-mapped.
"""

from __future__ import annotations

from engine.data.dataset import ROOT_ENV, ImageDataset, resolve_root
from engine.data.images import DEFAULT_MAX_PIXELS, decode_image, to_square
from engine.data.registry import DATASETS, IN_RANDOM_ORDER, SPLITS, dataset_options, get_loader, load_dataset
from engine.data.shapes import (
    CLASSES as SHAPE_CLASSES,
)
from engine.data.shapes import (
    FACTOR_RANGES,
    SYMMETRY,
    ShapeFactors,
    angle_mod_symmetry,
    render_shape,
)
from engine.data.spec import DataSpec

__all__ = [
    "DATASETS",
    "DEFAULT_MAX_PIXELS",
    "FACTOR_RANGES",
    "IN_RANDOM_ORDER",
    "ROOT_ENV",
    "SHAPE_CLASSES",
    "SPLITS",
    "SYMMETRY",
    "DataSpec",
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
