"""``DataSpec``: the one record of which images a stage reads (dataset name, split, data root, loader options).

Training writes the spec of its train split into every checkpoint; embedding writes the spec of the embedded split
into the store's manifest; evaluation and the app reload a store's items through that spec, so a run trained on a
dataset variant (``data.options``, e.g. ``seed=3`` for ``shapes``) is embedded and evaluated on that same variant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.core.errors import ConfigError
from engine.data.dataset import ImageDataset
from engine.data.registry import load_dataset


@dataclass(frozen=True)
class DataSpec:
    """Which images: ``load_dataset(name, split, root, **options)``, as one frozen, JSON-able value.

    Attributes:
        name: a registered dataset (``shapes``, ``cifar10``, ...).
        split: ``train``, ``test``, ...
        root: the data folder for file-backed datasets, or None (``$EQUILAB_DATA_ROOT`` / the default).
        options: loader keyword options (read-only mapping, sorted by key); ``{}`` is the default variant.
    """

    name: str
    split: str = "train"
    root: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a data spec needs a dataset name, got {self.name!r}.")
        if not isinstance(self.split, str) or not self.split:
            raise ConfigError(
                f"data spec {self.name!r}: split must be a non-empty string, got {self.split!r}."
            )
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"data spec {self.name!r}: options must be a mapping, got {self.options!r}.")
        root = None if self.root in (None, "") else str(self.root)
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "options", MappingProxyType(dict(sorted(self.options.items()))))

    def __hash__(self) -> int:
        return hash((self.name, self.split, self.root, json.dumps(dict(self.options), default=str)))

    def load(self) -> ImageDataset:
        """The dataset split this spec names (ConfigError / DataError as :func:`engine.data.load_dataset`)."""
        return load_dataset(self.name, self.split, self.root, **self.options)

    def with_split(self, split: str) -> DataSpec:
        """The same dataset variant and root, another split."""
        return replace(self, split=split)

    def same_items(self, other: DataSpec) -> bool:
        """Whether both name the same items (same name, split and options; the root is only where they lie)."""
        return (self.name, self.split, dict(self.options)) == (other.name, other.split, dict(other.options))

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "split", "root", "options"}``: what checkpoints and store manifests record."""
        return {"name": self.name, "split": self.split, "root": self.root, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataSpec:
        """Inverse of :meth:`to_dict`; ConfigError naming what is malformed."""
        if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
            raise ConfigError(f"malformed data spec {d!r}: need at least a dataset name.")
        root = d.get("root")
        if root is not None and not isinstance(root, str | Path):
            raise ConfigError(f"malformed data spec {dict(d)!r}: root must be a path or null.")
        return cls(d["name"], d.get("split") or "train", root, d.get("options") or {})
