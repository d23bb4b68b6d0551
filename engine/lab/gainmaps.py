"""The map's per-item displacement colourings (engine.lab.image.ItemGain), computed once per store and setting.

Colouring the map by |Δ|, relative invariance or the predictor's gain augments and embeds every item of the store
(seconds for 5,000 items on a CPU). ``ensure_gain`` reads the result from ``gain_<space>_<family>@<strength>.npz``
beside the store when it matches the store's manifest and the lab predictors it was scored with, else computes and
writes it (atomically; a read-only store only costs the cache). ``python -m engine precompute`` computes the map's
default setting (:data:`DEFAULT_FAMILY` at its default strength) for every space, so the first colouring a visit
asks for is read, not computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np

from engine.core.errors import EquiLabError
from engine.core.io import atomic_write
from engine.eval.displacement import store_reference
from engine.lab.image import ItemGain, default_strength, family_gain
from engine.lab.predictors import LabPredictors, cache_paths, manifest_hash
from engine.store.format import Store
from engine.store.items import store_images

VERSION = 2  # 2: a displacement counts as zero below 1e-6 of the embeddings' RMS norm (was: of Δ's own)
MAX_ITEMS = 200_000  # colourings over every item are offered (and precomputed) up to this many items
DEFAULT_FAMILY = "hue"  # the map's default augmentation for the displacement colourings


def gain_path(store_path: str | Path, space: str, family: str, strength: float) -> Path:
    return Path(store_path) / f"gain_{space}_{family}@{float(strength):.6g}.npz"


def cache_key(store: Store, space: str, family: str, strength: float) -> dict:
    """What a cached map depends on: the store (its manifest), the predictors' cache file, the setting."""
    meta = cache_paths(store.path, space)[1]
    predictors = hashlib.sha256(meta.read_bytes()).hexdigest() if meta.is_file() else ""
    return {
        "version": VERSION,
        "manifest": manifest_hash(store),
        "predictors": predictors,
        "space": space,
        "family": family,
        "strength": float(strength),
    }


def ensure_gain(
    store: Store, model, family: str, strength: float, space: str, predictors: LabPredictors
) -> ItemGain:
    """The :class:`ItemGain` of every item of ``store`` under ``family`` at ``strength`` in ``space``: read from
    beside the store when its key matches, else computed (engine.lab.image.family_gain) and cached."""
    key = cache_key(store, space, family, strength)
    path = gain_path(store.path, space, family, strength)
    got = load_gain(path, key) if key["predictors"] else None
    if got is not None:
        return got
    images = store_images(store, or_thumbnails=True)
    got = family_gain(model, images, family, strength, space, predictors, store_reference(store, space))
    if key["predictors"]:  # scored with predictors that are on disk: the key can name them
        with contextlib.suppress(OSError, EquiLabError):
            save_gain(path, got, key)
    return got


def save_gain(path: Path, g: ItemGain, key: dict) -> None:
    arrays = {
        "norm": g.norm,
        "rel_invariance": g.rel_invariance,
        "gain": g.gain,
        **{f"cos.{k}": v for k, v in g.cos.items()},
        "doc": np.array(json.dumps({**key, "strongest": g.strongest, "reason": g.reason})),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)


def load_gain(path: Path, key: dict) -> ItemGain | None:
    """The cached map at ``path`` when its recorded key equals ``key``; None when absent, stale or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            doc = json.loads(str(z["doc"]))
            if any(doc.get(k) != v for k, v in key.items()):
                return None
            cos = {k.removeprefix("cos."): z[k] for k in z.files if k.startswith("cos.")}
            return ItemGain(z["norm"], z["rel_invariance"], z["gain"], cos, doc["strongest"], doc["reason"])
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None


def precompute_gain(store: Store, model, space: str, predictors: LabPredictors) -> ItemGain:
    """The map's default colouring (:data:`DEFAULT_FAMILY` at its default strength) of ``space``."""
    return ensure_gain(store, model, DEFAULT_FAMILY, default_strength(DEFAULT_FAMILY), space, predictors)
