"""Embedding displacements caused by augmentations: actual delta = e(a(x)) - e(x) vs a prediction delta_hat.

EquiMod predicts in its "equivariant" space with its own ``u([y0, e_p(p)])``. Every other (method, space) gets
a POST-HOC predictor of the same form fitted on frozen features, so all methods get a comparable score:

    delta_hat = [e(x), p, (P e(x)) (x) p] @ W + b        (closed-form ridge, standardised features)

where ``p`` is the z-scored 15-d EquiMod parameter vector and ``P`` the top-``rank`` PCA axes of e(x) (the
interaction term lets the displacement depend on the image, as EquiMod's MLP does, at linear cost).
Predictors are saved as ``posthoc_<space>.npz`` beside the store (no pickle) so the app does not refit them.

:func:`displace` is the one function that embeds a batch of views and returns Δ, Δ̂ and their per-view scores
(the lab and the map call it); :func:`sweep_spaces` and :func:`run_displacement_eval` score batches for the
evaluation; :func:`scored_space` picks the space whose displacement is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from engine import augment as A
from engine.augment import FAMILIES, Recipe, sample_params
from engine.augment.recipes import dataset_recipe, training_recipe
from engine.core.errors import ConfigError, StoreError
from engine.core.io import atomic_write
from engine.eval import measures as M
from engine.eval.context import protocol_row, sample_images
from engine.eval.metrics import rel_error, ridge_fit, row_cos
from engine.methods.protocol import LOGIT_KEYS, Predicts
from engine.store.projection import pca

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (z0 [B, D], raw p [B, 15]) -> z_hat [B, D]


@dataclass(frozen=True)
class PosthocPredictor:
    """Ridge displacement predictor of one space; call it like EquiMod's: ``pred(z0, p_raw) -> z_hat``."""

    space: str
    w: np.ndarray  # [F, D]
    b: np.ndarray  # [D]
    feat_mean: np.ndarray  # [F]
    feat_std: np.ndarray  # [F]
    p_mean: np.ndarray  # [15]
    p_std: np.ndarray  # [15]
    z_mean: np.ndarray  # [D]: PCA centre of e(x)
    z_axes: np.ndarray  # [rank, D]: PCA axes used in the interaction term

    def features(self, z0: np.ndarray, p_raw: np.ndarray) -> np.ndarray:
        return (_features(self, z0, p_raw) - self.feat_mean) / self.feat_std

    def delta(self, z0: np.ndarray, p_raw: np.ndarray) -> np.ndarray:
        return (self.features(z0, p_raw) @ self.w + self.b).astype(np.float32)

    def __call__(self, z0: np.ndarray, p_raw: np.ndarray) -> np.ndarray:
        return (np.asarray(z0, np.float64) + self.delta(z0, p_raw)).astype(np.float32)


def _features(pr: PosthocPredictor, z0: np.ndarray, p_raw: np.ndarray) -> np.ndarray:
    z0 = np.atleast_2d(np.asarray(z0, np.float64))
    p = (np.atleast_2d(np.asarray(p_raw, np.float64)) - pr.p_mean) / pr.p_std
    r = (z0 - pr.z_mean) @ pr.z_axes.T  # [B, rank]
    inter = (r[:, :, None] * p[:, None, :]).reshape(len(z0), -1)  # [B, rank * 15]
    return np.concatenate([z0, p, inter], axis=1)


def fit_posthoc(
    z0: np.ndarray, zt: np.ndarray, p_raw: np.ndarray, space: str, rank: int = 16, alpha: float = 10.0
) -> PosthocPredictor:
    """Fit the ridge predictor of ``delta = zt - z0`` from (z0, raw parameter vectors) of sampled views."""

    z0, zt, p_raw = (np.asarray(v, np.float64) for v in (z0, zt, p_raw))
    basis = pca(z0, min(rank, z0.shape[1]))
    p_std = p_raw.std(axis=0)
    shell = PosthocPredictor(
        space=space,
        w=np.zeros(0),
        b=np.zeros(0),
        feat_mean=np.zeros(0),
        feat_std=np.ones(0),
        p_mean=p_raw.mean(axis=0),
        p_std=np.where(p_std > 1e-8, p_std, 1.0),  # constant parameters (never sampled) carry no signal
        z_mean=basis.mean,
        z_axes=basis.components,
    )
    f = _features(shell, z0, p_raw)
    fm, fs = f.mean(axis=0), f.std(axis=0)
    fs = np.where(fs > 1e-8, fs, 1.0)
    w, b = ridge_fit((f - fm) / fs, zt - z0, alpha=alpha)
    return PosthocPredictor(**{**_asdict(shell), "w": w, "b": b, "feat_mean": fm, "feat_std": fs})


def _asdict(p: PosthocPredictor) -> dict:
    return {f.name: getattr(p, f.name) for f in fields(p)}


def predictor_path(store: str | Path, space: str) -> Path:
    return Path(store) / f"posthoc_{space}.npz"


def save_predictor(pred: PosthocPredictor, store: str | Path) -> Path:
    """Write ``posthoc_<space>.npz`` into the store directory (atomically; arrays only, no pickle)."""

    arrays = {k: np.asarray(v) for k, v in _asdict(pred).items() if k != "space"}
    path = predictor_path(store, pred.space)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, space=np.array(pred.space), **arrays)

    return atomic_write(path, write)


def load_predictor(store: str | Path, space: str) -> PosthocPredictor:
    """The saved post-hoc predictor of ``space``; StoreError (with the fitting command) if there is none."""
    path = predictor_path(store, space)
    if not path.is_file():
        raise StoreError(
            f"no post-hoc predictor {path}; fit it with: python -m engine eval --store {store} --displacement"
        )
    with np.load(path, allow_pickle=False) as z:
        return PosthocPredictor(space=str(z["space"]), **{k: z[k] for k in z.files if k != "space"})


# ---------------------------------------------------------------- embedding views with the shared pipeline

# The space whose displacement is scored and shown by default: EquiMod's own "equivariant" predictor space, else
# the projector (post-hoc predictor), else the backbone. The evaluation's table, the study report and the lab agree.
SCORED_SPACES = ("equivariant", "projector", "backbone")


def scored_space(spaces) -> str:
    """The first of :data:`SCORED_SPACES` among ``spaces`` (the backbone when none is present)."""
    have = set(spaces)
    return next((s for s in SCORED_SPACES if s in have), "backbone")


def _device(model) -> torch.device:
    return next(model.parameters()).device


class Embedded(NamedTuple):
    """Embeddings of originals and their views: every space's ``e(x)`` and ``e(a(x))`` and the 15-d vectors."""

    e0: dict[str, np.ndarray]  # space -> [B0, D]: the originals (B0 = 1 when one image is broadcast)
    et: dict[str, np.ndarray]  # space -> [B, D]: the views
    p: np.ndarray  # [B, 15] raw EquiMod parameter vectors
    views: torch.Tensor  # float [B, 3, S, S] in [0, 1] on the model's device: the augmented images


def original(images: torch.Tensor, size: int) -> torch.Tensor:
    """The un-augmented images at the model's input ``size`` (what ``e(x)`` embeds): ``engine.augment.preprocess``,
    the same input the stores were embedded from (and equal to the identity view)."""
    return A.preprocess(images, size)


@torch.no_grad()
def embed_views(model, images: torch.Tensor, params) -> Embedded:
    """Embed uint8/float ``images`` [B, 3, H, W] and their views ``params`` (one row per image, or many rows for
    a single image) with ``model``; the original goes through :func:`original` at the model's size."""

    dev = _device(model)
    images = images.to(dev)
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    size = int(getattr(model, "image_size", hw[0]))
    x0, xt = original(images, size), A.apply(images, params)
    # One forward pass for originals and views: an identity view then embeds exactly as its original (Δ = 0).
    emb = model.embed(torch.cat([x0, xt]))
    e0, et = ({k: v[: len(x0)] for k, v in emb.items()}, {k: v[len(x0) :] for k, v in emb.items()})
    p = A.equimod_vector(params, hw).float().cpu().numpy()
    return Embedded(_np(e0), _np(et), p, xt)


def _np(d: dict) -> dict[str, np.ndarray]:
    return {k: v.float().cpu().numpy() for k, v in d.items() if k not in LOGIT_KEYS}


def resolve_predictor(model, space: str, predictor: Predictor | None) -> tuple[Predictor | None, str]:
    """EquiMod's own predictor in its "equivariant" space, else the given one (post-hoc), else none."""
    if space == "equivariant" and isinstance(model, Predicts):
        dev = _device(model)

        @torch.no_grad()
        def own(z0: np.ndarray, p: np.ndarray) -> np.ndarray:
            z0_t = torch.tensor(
                np.asarray(z0, dtype=np.float32), device=dev
            )  # a copy: store arrays are read-only
            p_t = torch.tensor(np.asarray(p, dtype=np.float32), device=dev)
            y = model.predict(z0_t, p_t)
            return y.float().cpu().numpy()

        return own, "equimod"
    return (predictor, "post-hoc") if predictor is not None else (None, "none")


def _space(e: dict[str, np.ndarray], space: str) -> np.ndarray:
    if space not in e:
        raise ConfigError(f"space {space!r} not produced by this model; choose from {sorted(e)}")
    return e[space]


@dataclass(frozen=True)
class Displacement:
    """Views in one space: actual Δ = e(a(x)) − e(x), predicted Δ̂ = ê(a(x)) − e(x) and per-view scores [B]."""

    z0: np.ndarray  # [B, D] e(x), one row per view
    z: np.ndarray  # [B, D] e(a(x))
    z_hat: np.ndarray | None  # [B, D] predicted e(a(x)); None without a predictor
    predictor: str  # "equimod", "post-hoc" or "none"
    norm: np.ndarray  # |Δ|
    raw_cos: np.ndarray  # uncentred cos(e(a(x)), e(x)): near 1 for any pair of images (reference only)
    cos: np.ndarray  # cos(Δ, Δ̂); nan without a predictor or where Δ or Δ̂ is zero
    rel_err: np.ndarray  # |Δ̂ − Δ| / |Δ|; nan without a predictor or where Δ is zero
    views: np.ndarray | None = None  # float [B, 3, S, S] in [0, 1]: the augmented images, when embedded here
    rel_invariance: np.ndarray | None = (
        None  # per-view relative invariance (measures.item_invariance); needs ref
    )

    @property
    def actual(self) -> np.ndarray:
        return self.z - self.z0

    @property
    def predicted(self) -> np.ndarray | None:
        return None if self.z_hat is None else self.z_hat - self.z0

    @property
    def invariance(self) -> np.ndarray:
        """Deprecated name of :attr:`raw_cos` (the uncentred cosine); read :attr:`rel_invariance` instead."""
        return self.raw_cos


def displacement(z0, z, z_hat=None, predictor: str = "none", views=None, ref: M.Reference | None = None):
    """Per-view displacement scores from embeddings of the originals ``z0``, the views ``z`` and the predicted
    views ``z_hat`` (all [B, D]; ``z0`` may be one row for all views); ``ref`` (:func:`store_reference`) adds
    the per-view relative invariance."""
    z = np.atleast_2d(np.asarray(z, np.float64))
    z0 = np.broadcast_to(np.atleast_2d(np.asarray(z0, np.float64)), z.shape)
    delta = z - z0
    nan = np.full(len(z), np.nan)
    if z_hat is None:
        cos, rel = nan, nan
    else:
        z_hat = np.atleast_2d(np.asarray(z_hat, np.float64))
        cos, rel = row_cos(delta, z_hat - z0, undefined=np.nan), rel_error(delta, z_hat - z0)
    rel_inv = None
    if ref is not None:
        rel_inv = nan if ref.reason else M.item_invariance(z0, z, ref)
    return Displacement(
        z0=z0,
        z=z,
        z_hat=z_hat,
        predictor=predictor,
        norm=np.linalg.norm(delta, axis=1),
        raw_cos=row_cos(z, z0),
        cos=cos,
        rel_err=rel,
        views=views,
        rel_invariance=rel_inv,
    )


def displace(
    model,
    images: torch.Tensor,
    params,
    space: str,
    predictor: Predictor | None = None,
    ref: M.Reference | None = None,
) -> Displacement:
    """THE displacement of a batch of views: embed ``images`` (uint8/float [B, 3, H, W], or [1, ...] broadcast
    over the rows of ``params``) and their views ``params`` with ``model``, predict the views in ``space``
    (EquiMod's own predictor in "equivariant", else ``predictor``, else none) and score every view
    (``ref``: the space's :func:`store_reference`, for the per-view relative invariance)."""
    emb = embed_views(model, images, params)
    z0, z = _space(emb.e0, space), _space(emb.et, space)
    z0 = np.broadcast_to(z0, z.shape)
    fn, kind = resolve_predictor(model, space, predictor)
    z_hat = None if fn is None else np.asarray(fn(np.ascontiguousarray(z0), emb.p), np.float32)
    return displacement(z0, z, z_hat, kind, emb.views.float().cpu().numpy(), ref)


def store_reference(store, space: str, seed: int = 0) -> M.Reference:
    """The :class:`~engine.eval.measures.Reference` (centre, scale, between-image spread) of a store's clean
    embeddings in ``space``: what per-item invariance in the lab and the map is measured against."""
    return M.fit_reference(np.asarray(store.embeddings(space)), seed)


# ---------------------------------------------------------------- view sets: recipe views and one-family sweeps


def eval_recipe(model, dataset: str | None) -> Recipe:
    """The recipe a model's views are measured with on ``dataset``: its own training recipe, else the
    dataset's (``engine.augment.recipes.training_recipe``), so reference arms see the trained arms' views."""
    return training_recipe(model, dataset)


def store_dataset(store) -> str | None:
    """The dataset a store was embedded from (its manifest's source)."""
    return store.manifest.get("source", {}).get("dataset")


def sweep_grid(family: str, full: bool = False) -> tuple[float, ...]:
    """The evaluation's strengths of ``family``: its coarse grid (``full``: every strength of its sweep, the lab's
    grid) without the identity (whose Δ is 0 by construction; each op appears once, so no average counts the
    identity, or one op, twice)."""
    fam = FAMILIES[family]
    out: list[float] = []
    for s in fam.sweep if full else fam.coarse:
        if not fam.same(s, fam.neutral) and not any(fam.same(s, t) for t in out):
            out.append(float(s))
    return tuple(out)


@dataclass(frozen=True)
class ViewSet:
    """Embedded views of several images: every space's e(x) and e(a(x)) row by row, the 15-d vectors and the
    group labels ((family, strength) of one-family sweep views; None for composed recipe views)."""

    e0: dict[str, np.ndarray]
    et: dict[str, np.ndarray]
    p: np.ndarray
    groups: tuple | None

    def views(self, space: str) -> M.Views:
        return M.Views(_space(self.e0, space), _space(self.et, space), self.p, self.groups)

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(self.e0)


def _labels(vs: ViewSet) -> tuple:
    return vs.groups if vs.groups is not None else (None,) * len(vs.p)


def join(*sets: ViewSet) -> ViewSet:
    """Rows of several view sets, one after the other (labels kept; None where a set has none)."""
    spaces = sets[0].spaces
    cat = lambda attr: {k: np.concatenate([getattr(v, attr)[k] for v in sets]) for k in spaces}  # noqa: E731
    groups = None if all(v.groups is None for v in sets) else tuple(g for v in sets for g in _labels(v))
    return ViewSet(cat("e0"), cat("et"), np.concatenate([v.p for v in sets]), groups)


def recipe_views(model, images: torch.Tensor, recipe: Recipe, generator: torch.Generator, batch: int = 256):
    """One random view of ``recipe`` per image (uint8 [N, 3, H, W]): a :class:`ViewSet` without groups."""
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    parts = []
    for s in range(0, len(images), batch):
        b = images[s : s + batch].to(_device(model))
        parts.append(embed_views(model, b, sample_params(recipe, len(b), hw, generator)))
    return join(*(ViewSet(e.e0, e.et, e.p, None) for e in parts))


def sweep_views(model, images: torch.Tensor, families=None, batch: int = 256, full: bool = False) -> ViewSet:
    """Every image under every :func:`sweep_grid` strength (``full``: the whole sweep) of each family (all else
    identity), labelled (family, strength)."""
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    size = int(getattr(model, "image_size", hw[0]))
    parts = []
    for family in families or FAMILIES:
        for st in sweep_grid(family, full):
            for s in range(0, len(images), batch):
                b = images[s : s + batch].to(_device(model))
                emb = embed_views(model, b, FAMILIES[family].params(st, len(b), hw, size, _device(model)))
                parts.append(ViewSet(emb.e0, emb.et, emb.p, ((family, st),) * len(b)))
    return join(*parts)


def sample_pairs(model, images: torch.Tensor, generator: torch.Generator, batch: int = 256, recipe=None):
    """(e0, et per space, raw p) for one random recipe view of every image (default: the training recipe)."""
    vs = recipe_views(model, images, recipe or training_recipe(model), generator, batch)
    return vs.e0, vs.et, vs.p


def space_predictor(model, space: str, fit: M.Views) -> tuple[M.ModelPredictor | None, str]:
    """The method's predictor in ``space``: EquiMod's own in "equivariant" (kind ``equimod``), else None so
    the report fits the post-hoc ridge on ``fit`` (kind ``post-hoc``)."""
    fn, kind = resolve_predictor(model, space, None)
    return (fn, kind) if fn is not None else (None, "post-hoc")


def fit_space_predictors(
    model, train_store, space: str, n_fit: int = 1024, n_sweep: int = 64, seed: int = 0, dataset=None
) -> M.Predictors:
    """The lab's predictors of ``space``: the method's (EquiMod's own or the post-hoc ridge) and the four
    baselines (mean displacement of the family and strength, parameters only, image only, shuffled), fitted
    on ``n_fit`` recipe views and ``n_sweep`` images' sweep views of ``train_store`` (the evaluation's fit).
    ``.predict(z0, p, groups)`` -> {name: Δ̂}; a view's group is (family, strength) for one-family views."""
    fit = _fit_set(model, train_store, n_fit, n_sweep, seed, dataset)
    fn, _ = space_predictor(model, space, fit.views(space))
    return M.fit_predictors(fit.views(space), fn)


def _fit_set(model, train_store, n_fit: int, n_sweep: int, seed: int, dataset) -> ViewSet:
    g = torch.Generator(device=_device(model)).manual_seed(seed)
    recipe = eval_recipe(model, dataset or store_dataset(train_store))
    imgs, _ = sample_images(train_store, n_fit, seed)
    sets = [recipe_views(model, imgs, recipe, g)]
    if n_sweep > 0:
        sets.append(sweep_views(model, imgs[:n_sweep]))
    return join(*sets)


# ---------------------------------------------------------------- evaluation over a store (engine.eval.evaluate)


def _row(space: str, metric: str, value, note: str = "", **extra) -> dict:
    v = float(value)
    row = {"space": space, "metric": metric, "value": v, **extra}
    if note:
        row["note"] = note
    return row


def invariance_rows(space: str, prefix: str, inv: M.Invariance) -> list[dict]:
    """``<prefix>invariance/{relative, centred_cos, between_cos, raw_cos}`` rows of one measurement."""
    return [
        _row(space, f"{prefix}invariance/relative", inv.invariance, inv.reason),
        _row(space, f"{prefix}invariance/centred_cos", inv.centred_cos, inv.reason),
        _row(space, f"{prefix}invariance/between_cos", inv.between_cos, inv.reason),
        _row(space, f"{prefix}invariance/raw_cos", inv.raw_cos),
    ]


def report_rows(
    space: str, prefix: str, rep, kind: str, retrieval: bool = True, note: str = ""
) -> list[dict]:
    """Rows of one :class:`~engine.eval.measures.DisplacementReport` (or a group's): ``<prefix><predictor>/cos``
    and ``/r2`` for the method and each baseline, ``<prefix>gain/{cos, r2}`` (note: the strongest baseline),
    ``<prefix>image/{actual_share, predicted_share, ratio}``, and ``<prefix>retrieval/...`` when asked."""
    rows = []
    for name, sc in rep.scores.items():
        for k in ("cos", "r2"):
            rows.append(_row(space, f"{prefix}{name}/{k}", getattr(sc, k), note or sc.reason, predictor=kind))
    g = rep.gain
    for k, strongest in (("cos", g.strongest_cos), ("r2", g.strongest_r2)):
        why = f"vs {strongest}" if strongest else "undefined: no finite score"
        rows.append(_row(space, f"{prefix}gain/{k}", getattr(g, k), note or why, predictor=kind))
    for k in ("actual_share", "predicted_share", "ratio"):
        rows.append(_row(space, f"{prefix}image/{k}", getattr(rep.image, k), note or rep.image.reason))
    if retrieval:
        for name, r in rep.retrieval.items():
            for k in ("mrr", "hit1", "hit5"):
                rows.append(_row(space, f"{prefix}retrieval/{name}/{k}", getattr(r, k), r.reason))
        any_r = next(iter(rep.retrieval.values()))
        for k in ("mrr", "hit1", "hit5"):
            rows.append(_row(space, f"{prefix}retrieval/chance/{k}", getattr(any_r, f"chance_{k}")))
    return rows


NOT_ENCODED = "not encoded: the 15-d parameter vector has no entry for this family (predictors see identity)"


def run_displacement_eval(model, ctx) -> list[dict]:
    """Rows of displacement prediction beside its baselines, and of relative invariance, in every space.

    Fit split: ``ctx.n_fit`` train images' recipe views (the dataset's recipe when the model has none) plus
    ``ctx.n_sweep`` train images' sweep views. Test: ``ctx.n_eval`` test images' recipe views (``disp/...``,
    ``invariance/...``) and ``ctx.n_sweep`` test images' sweep views (``sweep/disp/...`` overall,
    ``sweep/<family>@<s>/...`` per group). The post-hoc predictor of each space is saved beside the test store.
    """
    dataset = store_dataset(ctx.test)
    recipe = eval_recipe(model, dataset)
    g = torch.Generator(device=_device(model)).manual_seed(ctx.seed)
    tr_imgs, _ = sample_images(ctx.train, ctx.n_fit, ctx.seed)
    te_imgs, _ = sample_images(ctx.test, ctx.n_eval, ctx.seed + 1)
    fit_recipe, test_recipe = recipe_views(model, tr_imgs, recipe, g), recipe_views(model, te_imgs, recipe, g)
    fit_sweep = sweep_views(model, tr_imgs[: ctx.n_sweep])
    test_sweep = sweep_views(model, te_imgs[: ctx.n_sweep])
    fit_all = join(fit_recipe, fit_sweep)
    not_encoded = M.not_encoded_families()
    rows = []
    for space in test_recipe.spaces:
        fn, kind = space_predictor(model, space, fit_recipe.views(space))
        if fn is None:  # the lab's saved post-hoc predictor: the same ridge, fitted on the recipe views
            fr = fit_recipe.views(space)
            save_predictor(fit_posthoc(fr.z0, fr.zt, fr.p, space), ctx.test.path)
        ref = M.fit_reference(test_recipe.e0[space], ctx.seed)
        rows += invariance_rows(space, "", M.invariance(test_recipe.e0[space], test_recipe.et[space], ref))
        rep = M.displacement_report(fit_recipe.views(space), test_recipe.views(space), fn, seed=ctx.seed)
        rows += report_rows(space, "disp/", rep, kind)
        rows.append(_row(space, "disp/n", rep.n, predictor=kind))
        sw = M.displacement_report(fit_all.views(space), test_sweep.views(space), fn, seed=ctx.seed)
        rows += report_rows(space, "sweep/disp/", sw, kind, retrieval=False)
        rows += _sweep_rows(space, test_sweep, sw, ref, kind, not_encoded)
    return [protocol_row("recipe", recipe_name(model, dataset)), *rows]


def recipe_name(model, dataset: str | None) -> str:
    """The name of the recipe :func:`eval_recipe` uses (recorded in eval.json)."""
    own = getattr(getattr(model, "config", None), "recipe", None)
    return own or dataset_recipe(dataset)


def _sweep_rows(space, test_sweep: ViewSet, sw, ref, kind: str, not_encoded) -> list[dict]:
    """Per (family, strength): ``norm`` (mean |Δ|), relative invariance and the group's displacement scores."""
    rows = []
    labels = _labels(test_sweep)
    z0, zt = test_sweep.e0[space], test_sweep.et[space]
    for grp in sw.groups:
        family, st = grp.label
        idx = np.array([i for i, g in enumerate(labels) if g == grp.label])
        pre = f"sweep/{family}@{st:g}/"
        rows.append(_row(space, pre + "norm", np.linalg.norm(zt[idx] - z0[idx], axis=1).mean()))
        rows += invariance_rows(space, pre, M.invariance(z0[idx], zt[idx], ref))
        note = "" if grp.encoded else NOT_ENCODED
        rows.append(_row(space, pre + "encoded", float(grp.encoded), note))
        rows += report_rows(space, pre + "disp/", grp, kind, retrieval=False, note=note)
    return rows
