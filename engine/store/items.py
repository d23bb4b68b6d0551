"""Which items a store holds: its :class:`engine.data.DataSpec` (recorded in the manifest's ``source``) and their
full-size images, reloaded through that spec (evaluation and the app; the store itself keeps only thumbnails)."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.core.errors import ConfigError, EquiLabError, StoreError
from engine.data import DataSpec
from engine.store.format import Store


def store_spec(manifest: dict[str, Any]) -> DataSpec:
    """The data spec of a store's items: ``source.data``; manifests written before it existed fall back to
    ``source.dataset`` / ``split`` / ``data_root`` (and ``dataset_options`` when present), the default variant."""
    src = manifest.get("source") if isinstance(manifest, dict) else None
    if not isinstance(src, dict):
        raise StoreError("store manifest has no source; rebuild the store")
    try:
        if "data" in src:
            return DataSpec.from_dict(src["data"])
        return DataSpec(
            src["dataset"], src.get("split") or "test", src.get("data_root"), src.get("dataset_options") or {}
        )
    except (ConfigError, KeyError, TypeError) as e:
        raise StoreError(
            f"store manifest: its source names no readable dataset ({e}); rebuild the store"
        ) from e


def store_images(store: Store, ids: np.ndarray | None = None, *, or_thumbnails: bool = False) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` images of the store's items (all, memory-mapped; or the rows ``ids``, copied),
    reloaded from the dataset variant and split the store was embedded from.

    Raises the loader's error when that dataset cannot be read, and StoreError when it no longer holds the store's
    items (another size); with ``or_thumbnails`` the store's thumbnails are returned instead (what the app shows).
    """
    try:
        images = _items(store)
    except EquiLabError:
        if not or_thumbnails:
            raise
        images = store.thumbnails
    return images if ids is None else np.asarray(images[np.asarray(ids)])


def _items(store: Store) -> np.ndarray:
    spec = store_spec(store.manifest)
    data = spec.load()
    limit = store.manifest["source"].get("limit")
    if len(data) != store.n and not (limit == store.n and len(data) >= store.n):
        raise StoreError(
            f"store {store.path} holds {store.n} items but {spec.name}/{spec.split} now has {len(data)}; "
            "rebuild the store"
        )
    # A whole split is returned as it is: large ``shapes`` splits render on access, and slicing would render all.
    return data.images if len(data) == store.n else data.images[: store.n]
