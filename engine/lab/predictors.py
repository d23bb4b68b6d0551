"""The lab's displacement predictors: the method's (EquiMod's own, else the post-hoc ridge) and the model-free
baselines, fitted once per (store, space) and cached beside the store.

``ensure_predictors(store, model, space)`` embeds train-split views of the store's dataset (the model's recipe
views plus one-family sweep views, as the evaluation's fit split), fits ``engine.eval.measures.fit_predictors``
in every space of the model, and writes ``lab_predictors_<space>.npz`` + ``.json`` (arrays and JSON only, no
pickle; both files written all-or-nothing). The JSON records the sha256 of the store's manifest: a rebuilt store
(another checkpoint, other items) refits. EquiMod keeps its own learned predictor in its "equivariant" space
(only the baselines are cached there). Nothing here draws; the app calls it with a progress callback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from engine.augment import FAMILIES
from engine.core.errors import EquiLabError, StoreError
from engine.core.io import atomic_files
from engine.eval import measures as M
from engine.eval.context import sample_ids
from engine.eval.displacement import (
    ViewSet,
    eval_recipe,
    join,
    recipe_views,
    space_predictor,
    store_dataset,
    sweep_grid,
    sweep_views,
)
from engine.store.format import Store, open_store
from engine.store.items import store_images, store_spec

# 2: the sweep views cover every strength of each family's sweep (the strengths the lab draws), not the evaluation's
# coarse grid, so the mean-displacement guess at e.g. rotation 45° is that strength's mean, not 90°'s
VERSION = 2
SHOWN: tuple[str, ...] = (M.METHOD, "mean_delta", "params_only")  # what the lab and the map draw
NAMES: dict[str, str] = {
    M.METHOD: "prediction",
    "mean_delta": "mean displacement",
    "params_only": "parameters only",
    "image_only": "image only",
    "shuffled_params": "shuffled parameters",
}
Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)


@dataclass(frozen=True, eq=False)
class LabPredictors:
    """The fitted predictors of one space; ``predict(z0, p, groups)`` -> ``{name: delta_hat [N, D]}``."""

    space: str
    fitted: M.Predictors
    kind: str  # "model" (EquiMod's own u) or "post-hoc" (ridge on [e(x), p, interaction])
    fit_on: str  # what the fit split was, in words
    n_fit: int  # fitted views

    @property
    def method_name(self) -> str:
        return "EquiMod's own predictor" if self.kind == "model" else "post-hoc ridge predictor"

    def group_of(self, strengths: Mapping[str, float]) -> M.Label:
        """The fit group of a view given as family -> strength: ``(family, nearest fitted strength)`` when one
        family is away from identity (the mean-displacement baseline's lookup), else None (composed views)."""
        moved = [
            n
            for n, s in strengths.items()
            if n in FAMILIES and not FAMILIES[n].same(float(s), FAMILIES[n].neutral)
        ]
        if len(moved) != 1:
            return None
        fam, s = FAMILIES[moved[0]], float(strengths[moved[0]])
        grid = [g[1] for g in self.fitted.group_means if isinstance(g, tuple) and g[0] == fam.name]
        if not grid:
            return None

        def dist(t: float) -> float:
            d = abs(t - s)
            return min(d, fam.period - d) if fam.period else d

        return (fam.name, min(grid, key=dist))

    def predict(
        self, z0: np.ndarray, p: np.ndarray, groups: Sequence[M.Label] | None = None
    ) -> dict[str, np.ndarray]:
        """``{name: delta_hat [N, D]}`` for the method and the baselines (no shuffled control: a lab view has no
        other view to borrow parameters from)."""
        out = self.fitted.predict(z0, p, groups, shuffle=None)
        out.pop("shuffled_params", None)
        return out


# ---------------------------------------------------------------- fitting


def _store(store: Store | str | Path) -> Store:
    return store if isinstance(store, Store) else open_store(store, verify=False)


def manifest_hash(store: Store) -> str:
    """sha256 of the store's manifest: changes whenever the store is rebuilt (checkpoint, items, arrays)."""
    return hashlib.sha256((Path(store.path) / "manifest.json").read_bytes()).hexdigest()


def fit_images(store: Store, n: int, seed: int) -> tuple[torch.Tensor, str]:
    """(uint8 [n, 3, H, W], description): ``n`` train-split images of the store's dataset variant; the store's
    own items (or thumbnails) when the train split cannot be read, said in the description."""
    spec = store_spec(store.manifest)
    try:
        data = spec.with_split("train").load()
        ids = sample_ids(len(data), n, seed)
        imgs, where = np.asarray(data.images[ids]), f"{spec.name}/train"
    except EquiLabError as e:
        ids = sample_ids(store.n, n, seed)
        imgs = store_images(store, ids, or_thumbnails=True)
        where = f"{spec.name}/{spec.split} (the store's own items: the train split is not readable: {e})"
    return torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2), where


def fit_views(
    model, images: torch.Tensor, dataset: str | None, n_sweep: int, seed: int, progress: Progress | None
) -> ViewSet:
    """One recipe view of every image plus the first ``n_sweep`` images at every strength of every family's sweep
    (the lab's grid, so each strength the lab's sweep draws has its own mean-displacement group)."""
    say = progress or (lambda f, m: None)
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(seed)
    recipe = eval_recipe(model, dataset)
    sets, batch = [], 256
    steps = -(-len(images) // batch) + len(FAMILIES)
    for i, s in enumerate(range(0, len(images), batch)):
        say(i / steps, f"recipe views {s}/{len(images)}")
        sets.append(recipe_views(model, images[s : s + batch], recipe, g, batch))
    done = -(-len(images) // batch)
    for j, family in enumerate(FAMILIES):
        if n_sweep > 0 and sweep_grid(family):
            say((done + j) / steps, f"sweep views: {FAMILIES[family].label}")
            sets.append(sweep_views(model, images[:n_sweep], [family], batch, full=True))
    return join(*sets)


def fit_space(model, views: ViewSet, space: str, fit_on: str) -> LabPredictors:
    """Fit the method's predictor (EquiMod's own in "equivariant", else post-hoc) and the baselines."""
    fit = views.views(space)
    fn, _ = space_predictor(model, space, fit)
    fitted = M.fit_predictors(fit, fn)
    return LabPredictors(space, fitted, fitted.method_kind, fit_on, len(fit))


def ensure_predictors(
    store: Store | str | Path,
    model,
    space: str,
    progress: Progress | None = None,
    n_fit: int = 512,
    n_sweep: int = 32,
    seed: int = 0,
) -> LabPredictors:
    """The lab's predictors of ``space`` for ``model`` (the store's checkpoint): read from the cache beside the
    store when it matches the store's manifest and these settings, else fitted on ``n_fit`` train images' recipe
    views and ``n_sweep`` images' sweep views (``progress(fraction, message)`` while embedding) and cached for
    every space of the model. A store directory that cannot be written only costs the cache."""
    store = _store(store)
    key = {
        "version": VERSION,
        "manifest": manifest_hash(store),
        "n_fit": n_fit,
        "n_sweep": n_sweep,
        "seed": seed,
    }
    cached = load_cached(store.path, space, key, model)
    if cached is not None:
        return cached
    images, fit_on = fit_images(store, n_fit, seed)
    views = fit_views(model, images, store_dataset(store), n_sweep, seed, progress)
    if space not in views.spaces:
        raise StoreError(f"space {space!r} not produced by this model; choose from {sorted(views.spaces)}")
    out = None
    for name in views.spaces:
        if progress:
            progress(0.99, f"fitting the {name} predictors")
        fitted = fit_space(model, views, name, fit_on)
        with contextlib.suppress(EquiLabError, OSError):  # a read-only store directory: refit next time
            save(store.path, fitted, key)
        if name == space:
            out = fitted
    if progress:
        progress(1.0, "")
    return out


# ---------------------------------------------------------------- the cache (npz arrays + JSON, no pickle)


def cache_paths(store_path: str | Path, space: str) -> tuple[Path, Path]:
    base = Path(store_path) / f"lab_predictors_{space}"
    return base.with_suffix(".npz"), base.with_suffix(".json")


def _ridge_arrays(prefix: str, r: M.RidgeDelta) -> dict[str, np.ndarray]:
    return {f"{prefix}.{f.name}": np.asarray(getattr(r, f.name)) for f in fields(r) if f.name != "kind"}


def _ridge(prefix: str, kind: str, z) -> M.RidgeDelta:
    return M.RidgeDelta(
        kind, **{f.name: z[f"{prefix}.{f.name}"] for f in fields(M.RidgeDelta) if f.name != "kind"}
    )


def save(store_path: str | Path, lp: LabPredictors, key: dict) -> None:
    """Write the arrays and the JSON (key, groups, kind) of ``lp`` beside the store, all-or-nothing."""
    f = lp.fitted
    labels = list(f.group_means)
    arrays = {
        **_ridge_arrays("params_only", f.params_only),
        **_ridge_arrays("image_only", f.image_only),
        "overall_mean": np.asarray(f.overall_mean),
        "group_means": np.stack([f.group_means[g] for g in labels])
        if labels
        else np.zeros((0, len(f.overall_mean))),
    }
    if lp.kind == "post-hoc":
        arrays.update(_ridge_arrays("method", f.method))
    npz, meta = cache_paths(store_path, lp.space)
    doc = {
        **key,
        "space": lp.space,
        "kind": lp.kind,
        "fit_on": lp.fit_on,
        "n_fit_views": lp.n_fit,
        "groups": [[g[0], float(g[1])] for g in labels],
    }

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    with atomic_files() as stage:
        tmp = stage(npz, write_npz)
        doc["npz_sha256"] = hashlib.sha256(tmp.read_bytes()).hexdigest()
        stage(meta, lambda p: p.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n"))


def load_cached(store_path: str | Path, space: str, key: dict, model) -> LabPredictors | None:
    """The cached predictors of ``space`` when their JSON matches ``key`` and the npz its hash; else None."""
    npz, meta = cache_paths(store_path, space)
    try:
        doc = json.loads(meta.read_text())
        data = npz.read_bytes()
        if (
            any(doc.get(k) != v for k, v in key.items())
            or doc.get("npz_sha256") != hashlib.sha256(data).hexdigest()
        ):
            return None
        with np.load(npz, allow_pickle=False) as z:
            labels = [(str(f), float(s)) for f, s in doc["groups"]]
            if doc["kind"] == "model":
                fn, _ = space_predictor(model, space, None)
                if fn is None:
                    return None
                method = M.model_delta(fn)
            else:
                method = _ridge("method", "full", z)
            fitted = M.Predictors(
                method=method,
                method_kind=doc["kind"],
                params_only=_ridge("params_only", "params", z),
                image_only=_ridge("image_only", "image", z),
                group_means={g: z["group_means"][i] for i, g in enumerate(labels)},
                overall_mean=z["overall_mean"],
            )
        return LabPredictors(space, fitted, doc["kind"], str(doc["fit_on"]), int(doc["n_fit_views"]))
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None
