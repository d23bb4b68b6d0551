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
from engine.augment import FAMILIES, sample_params, training_recipe
from engine.core.errors import ConfigError, StoreError
from engine.core.io import atomic_write
from engine.eval.context import sample_images
from engine.eval.metrics import DisplacementScores, displacement_scores, rel_error, ridge_fit, row_cos
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
    """The un-augmented images at the model's input ``size`` (what ``e(x)`` embeds)."""
    return A.identity_view(images, size)


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
    return {k: v.float().cpu().numpy() for k, v in d.items() if k != "rotation_logits"}


def resolve_predictor(model, space: str, predictor: Predictor | None) -> tuple[Predictor | None, str]:
    """EquiMod's own predictor in its "equivariant" space, else the given one (post-hoc), else none."""
    if space == "equivariant" and hasattr(model, "predict"):
        dev = _device(model)

        @torch.no_grad()
        def own(z0: np.ndarray, p: np.ndarray) -> np.ndarray:
            y = model.predict(torch.as_tensor(z0, device=dev).float(), torch.as_tensor(p, device=dev).float())
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
    invariance: np.ndarray  # cos(e(a(x)), e(x)): 1 = unmoved
    cos: np.ndarray  # cos(Δ, Δ̂); nan without a predictor or where Δ or Δ̂ is zero
    rel_err: np.ndarray  # |Δ̂ − Δ| / |Δ|; nan without a predictor or where Δ is zero
    views: np.ndarray | None = None  # float [B, 3, S, S] in [0, 1]: the augmented images, when embedded here

    @property
    def actual(self) -> np.ndarray:
        return self.z - self.z0

    @property
    def predicted(self) -> np.ndarray | None:
        return None if self.z_hat is None else self.z_hat - self.z0


def displacement(z0, z, z_hat=None, predictor: str = "none", views=None) -> Displacement:
    """Per-view displacement scores from embeddings of the originals ``z0``, the views ``z`` and the predicted
    views ``z_hat`` (all [B, D]; ``z0`` may be one row for all views)."""
    z = np.atleast_2d(np.asarray(z, np.float64))
    z0 = np.broadcast_to(np.atleast_2d(np.asarray(z0, np.float64)), z.shape)
    delta = z - z0
    nan = np.full(len(z), np.nan)
    if z_hat is None:
        cos, rel = nan, nan
    else:
        z_hat = np.atleast_2d(np.asarray(z_hat, np.float64))
        cos, rel = row_cos(delta, z_hat - z0, undefined=np.nan), rel_error(delta, z_hat - z0)
    return Displacement(
        z0=z0,
        z=z,
        z_hat=z_hat,
        predictor=predictor,
        norm=np.linalg.norm(delta, axis=1),
        invariance=row_cos(z, z0),
        cos=cos,
        rel_err=rel,
        views=views,
    )


def displace(
    model, images: torch.Tensor, params, space: str, predictor: Predictor | None = None
) -> Displacement:
    """THE displacement of a batch of views: embed ``images`` (uint8/float [B, 3, H, W], or [1, ...] broadcast
    over the rows of ``params``) and their views ``params`` with ``model``, predict the views in ``space``
    (EquiMod's own predictor in "equivariant", else ``predictor``, else none) and score every view."""
    emb = embed_views(model, images, params)
    z0, z = _space(emb.e0, space), _space(emb.et, space)
    z0 = np.broadcast_to(z0, z.shape)
    fn, kind = resolve_predictor(model, space, predictor)
    z_hat = None if fn is None else np.asarray(fn(np.ascontiguousarray(z0), emb.p), np.float32)
    return displacement(z0, z, z_hat, kind, emb.views.float().cpu().numpy())


@dataclass(frozen=True)
class SweepResult:
    """Per-strength means over the images (arrays of length S)."""

    family: str
    space: str
    strengths: np.ndarray
    norm: np.ndarray
    invariance: np.ndarray
    cos: np.ndarray  # nan without a predictor
    rel_err: np.ndarray
    eqgain: np.ndarray
    top1: np.ndarray
    predictor: str


def sweep_spaces(
    model, images: torch.Tensor, family: str, strengths, predictors: dict[str, Predictor | None]
) -> dict[str, SweepResult]:
    """:func:`sweep` for several spaces at once (each strength is embedded once): space -> SweepResult."""

    if family not in FAMILIES:
        raise ConfigError(f"unknown augmentation family {family!r}; choose from {sorted(FAMILIES)}")
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    size = int(getattr(model, "image_size", hw[0]))
    fns = {s: resolve_predictor(model, s, p) for s, p in predictors.items()}
    rows: dict[str, list[DisplacementScores]] = {s: [] for s in predictors}
    for st in strengths:
        params = FAMILIES[family].params(float(st), len(images), hw, size, _device(model))
        emb = embed_views(model, images, params)
        for space in predictors:
            rows[space].append(score(_space(emb.e0, space), _space(emb.et, space), emb.p, fns[space][0]))
    keys = ("norm", "invariance", "cos", "rel_err", "eqgain", "top1")
    return {
        space: SweepResult(
            family=family,
            space=space,
            strengths=np.asarray(strengths, float),
            predictor=fns[space][1],
            **{k: np.array([getattr(r, k) for r in rs]) for k in keys},
        )
        for space, rs in rows.items()
    }


def sweep(
    model, images: torch.Tensor, family: str, strengths, space: str, predictor: Predictor | None = None
) -> SweepResult:
    """Displacement metrics of ``images`` (uint8 [B, 3, H, W]) along ``strengths`` of one augmentation family."""
    return sweep_spaces(model, images, family, strengths, {space: predictor})[space]


def score(z0: np.ndarray, zt: np.ndarray, p: np.ndarray, fn: Predictor | None) -> DisplacementScores:
    """Displacement scores of a batch; without a predictor cos/rel_err/eqgain/top1 are nan."""
    if fn is None:
        base = displacement_scores(z0, zt, z0)
        nan = float("nan")
        return DisplacementScores(nan, nan, nan, base.invariance, nan, base.norm, base.n)
    return displacement_scores(z0, zt, fn(z0, p))


def shuffled_control(
    z0: np.ndarray, zt: np.ndarray, p: np.ndarray, fn: Predictor, generator: np.random.Generator
) -> DisplacementScores:
    """Scores when each image gets ANOTHER image's parameters (a permutation across the batch)."""
    return displacement_scores(z0, zt, fn(z0, p[generator.permutation(len(p))]))


# ---------------------------------------------------------------- evaluation over a store (engine.eval.evaluate)


def sample_pairs(model, images: torch.Tensor, generator: torch.Generator, batch: int = 256):
    """(e0, et per space, raw p) for one random recipe view of every image (the training recipe at model size)."""

    hw = (int(images.shape[-2]), int(images.shape[-1]))
    r = training_recipe(model)
    parts = []
    for s in range(0, len(images), batch):
        b = images[s : s + batch].to(_device(model))
        parts.append(embed_views(model, b, sample_params(r, len(b), hw, generator))[:3])
    cat = lambda i: {k: np.concatenate([p[i][k] for p in parts]) for k in parts[0][i]}  # noqa: E731
    return cat(0), cat(1), np.concatenate([p[2] for p in parts])


def run_displacement_eval(model, ctx) -> list[dict]:
    """Rows of displacement scores per space (real vs shuffled parameters) and per-family sweeps.

    Post-hoc predictors are fitted on ``ctx.n_fit`` train images and saved beside the test store; EquiMod's
    "equivariant" space uses its own predictor. Top-1 retrieval is computed within batches of 256.
    """

    g = torch.Generator(device=_device(model)).manual_seed(ctx.seed)
    rng = np.random.default_rng(ctx.seed)
    tr_imgs, _ = sample_images(ctx.train, ctx.n_fit, ctx.seed)
    te_imgs, _ = sample_images(ctx.test, ctx.n_eval, ctx.seed + 1)
    f0, ft, fp = sample_pairs(model, tr_imgs, g)
    t0, tt, tp = sample_pairs(model, te_imgs, g)
    rows, fns = [], {}
    for space in t0:
        fn, kind = resolve_predictor(model, space, None)
        if fn is None:
            fn = fit_posthoc(f0[space], ft[space], fp, space)
            save_predictor(fn, ctx.test.path)
        fns[space] = fn
        real = score(t0[space][:256], tt[space][:256], tp[:256], fn)
        ctrl = shuffled_control(t0[space][:256], tt[space][:256], tp[:256], fn, rng)
        for tag, sc in (("", real), ("shuffled_", ctrl)):
            for k in ("cos", "rel_err", "eqgain", "top1") + (("invariance", "norm") if not tag else ()):
                rows.append(
                    {"space": space, "metric": f"{tag}disp_{k}", "value": getattr(sc, k), "predictor": kind}
                )
    sweep_imgs = te_imgs[: ctx.n_sweep]
    for family, fam in FAMILIES.items():
        strengths = fam.coarse
        for space, res in sweep_spaces(model, sweep_imgs, family, strengths, fns).items():
            for i, s in enumerate(res.strengths):
                for k in ("cos", "norm", "invariance"):
                    rows.append(
                        {
                            "space": space,
                            "metric": f"sweep/{family}@{s:g}/{k}",
                            "value": float(getattr(res, k)[i]),
                        }
                    )
    return rows
