"""Augmentation-lab logic for the dashboard: slider values -> AugParams, sweeps, random views drawn from a model's
own training recipe, the views of one image with their displacements, multi-model sweeps and linear 2-D bases.

Predicted displacements come with their model-free baselines (``engine.lab.predictors``): for each view the
method's prediction, the mean displacement of its family and strength and a ridge from the parameters alone, so a
person sees whether the model beats a guess. The sliders, their ranges and the sweeps come from the one families table (``engine.augment.FAMILIES``); the
displacements are computed by ``engine.eval.displacement.displace``, the same code the evaluation scores with.
Displacement arrows are drawn in a LINEAR basis (the store's PCA plane, or the axis of the mean displacement
plus the cloud's main direction orthogonal to it) because UMAP is non-linear: distances and directions of
transformed new points there mean nothing. Everything here is pure; no Streamlit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from engine.augment import (
    FAMILIES,
    AugParams,
    Family,
    Recipe,
    cat_params,
    compose,
    equimod_vector,
    find_family,
    sample_params,
)
from engine.core.errors import ConfigError, EquiLabError
from engine.eval import measures as M
from engine.eval.displacement import Displacement, Predictor, displace
from engine.lab.predictors import SHOWN, LabPredictors


@dataclass(frozen=True)
class SliderValues:
    """One augmentation as the lab's sliders describe it: a strength per family of ``FAMILIES`` (the field of the
    same name; identity by default) and where the crop sits."""

    crop_scale: float = 1.0  # fraction of the image area kept by the crop, (0, 1]
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0  # shift in turns
    grayscale: bool = False
    blur: float = 0.0  # sigma; 0 = no blur
    rotation: float = 0.0  # degrees, counter-clockwise
    crop_cx: float = 0.5  # crop centre, fraction of the width (clamped so the box fits)
    crop_cy: float = 0.5  # crop centre, fraction of the height

    def strengths(self) -> dict[str, float]:
        """family name -> strength, for every family of the table."""
        return {name: float(getattr(self, name)) for name in FAMILIES}


def check_values(values: SliderValues) -> None:
    """ConfigError naming the first strength outside its family's [low, high] (or a crop centre outside [0, 1])."""
    for name, s in values.strengths().items():
        f = FAMILIES[name]
        if not f.low <= s <= f.high or (name == "crop_scale" and s <= 0):
            raise ConfigError(f"{name}={s} is outside {f.label}'s range [{f.low:g}, {f.high:g}]")
    for name in ("crop_cx", "crop_cy"):
        if not 0.0 <= getattr(values, name) <= 1.0:
            raise ConfigError(f"{name}={getattr(values, name)} must be in [0, 1]")


def crop_box(values: SliderValues, image_hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """(top, left, height, width) in source pixels: the crop_scale family's box moved to the crop centre."""
    check_values(values)
    h, w = image_hw
    _, _, ch, cw = FAMILIES["crop_scale"].params(values.crop_scale, 1, image_hw, 1).crop[0].tolist()
    top = float(np.clip(values.crop_cy * h - ch / 2, 0.0, h - ch))
    left = float(np.clip(values.crop_cx * w - cw / 2, 0.0, w - cw))
    return top, left, float(ch), float(cw)


def compose_params(
    values: SliderValues, image_hw: tuple[int, int], size: int, device: str = "cpu"
) -> AugParams:
    """An ``engine.augment.AugParams`` for one image (B = 1) reproducing the slider values exactly: every family
    set through its own setter (``engine.augment.compose``), the crop placed at the crop centre."""
    p = compose(values.strengths(), 1, image_hw, size, device)
    box = torch.tensor([crop_box(values, image_hw)], dtype=torch.float32, device=device)
    return dataclasses.replace(p, crop=box)


def sweep_values(values: SliderValues, family: str) -> tuple[np.ndarray, list[SliderValues]]:
    """``values`` at every strength of the family's sweep grid, the rest unchanged: (grid, values)."""
    fam = find_family(family)
    grid = np.asarray(fam.sweep, dtype=np.float64)
    cast = bool if fam.flag else float
    return grid, [dataclasses.replace(values, **{fam.name: cast(v)}) for v in grid]


def slider_values(params: AugParams, image_hw: tuple[int, int], row: int = 0) -> SliderValues:
    """What the sliders show for row ``row`` of ``params``: each family's strength (clamped to its range), the crop's
    kept area and centre. The sliders cannot express a crop's aspect ratio, ColorJitter's op order or solarize:
    the lab's crop keeps the image's aspect and area, colour ops run in the fixed order."""
    h, w = image_hw
    top, left, ch, cw = (float(v) for v in params.crop[row].tolist())
    jitter = bool(params.jitter[row])
    raw = {
        "crop_scale": ch * cw / (h * w),
        "flip": float(params.flip[row]),
        "brightness": float(params.brightness[row]) if jitter else 1.0,
        "contrast": float(params.contrast[row]) if jitter else 1.0,
        "saturation": float(params.saturation[row]) if jitter else 1.0,
        "hue": float(params.hue[row]) if jitter else 0.0,
        "grayscale": float(params.gray[row]),
        "blur": float(params.sigma[row]) if bool(params.blur[row]) else 0.0,
        "rotation": float(params.rotation[row]),
    }
    strengths = {k: FAMILIES[k].clamp(v) for k, v in raw.items()}
    for k in ("flip", "grayscale"):
        strengths[k] = bool(strengths[k] >= 0.5)
    centre = {"crop_cx": (left + cw / 2) / w, "crop_cy": (top + ch / 2) / h}
    return SliderValues(**strengths, **{k: float(np.clip(v, 0.0, 1.0)) for k, v in centre.items()})


def random_values(recipe: Recipe, image_hw: tuple[int, int], seed: int, n: int = 1) -> list[SliderValues]:
    """``n`` views sampled from ``recipe`` (the model's own training recipe: ``engine.augment.training_recipe``)
    with ``engine.augment.sample_params``, as slider values; view ``i`` depends on ``seed + i`` only."""
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(int(seed) + i)
        out.append(slider_values(sample_params(recipe, 1, image_hw, g), image_hw))
    return out


@dataclass(frozen=True)
class Basis2D:
    """A linear map R^D -> R^2: ``(x - origin) @ axes.T`` with orthonormal rows in ``axes``."""

    origin: np.ndarray  # float [D]
    axes: np.ndarray  # float [2, D]
    name: str

    def project(self, x: np.ndarray) -> np.ndarray:
        """Coordinates [N, 2] of vectors ``x`` [N, D] (or [D] -> [2])."""
        return (np.asarray(x, dtype=np.float64) - self.origin) @ self.axes.T


def _top_direction(x: np.ndarray) -> np.ndarray:
    """Unit first principal direction of centred rows ``x`` (sign fixed: largest |entry| positive)."""
    v = M.principal_axes(x - x.mean(axis=0), 1)[0]
    return v * np.sign(v[np.argmax(np.abs(v))])


def displacement_basis(deltas: np.ndarray, cloud: np.ndarray) -> Basis2D:
    """Axis 1 = direction of the mean displacement; axis 2 = the cloud's main direction orthogonal to it."""
    d = np.asarray(deltas, dtype=np.float64).reshape(-1, np.shape(cloud)[1]).mean(axis=0)
    norm = np.linalg.norm(d)
    if norm < 1e-12:
        raise ConfigError("the mean displacement is zero (identity augmentation?): use the PCA basis")
    a1 = d / norm
    c = np.asarray(cloud, dtype=np.float64)
    residual = c - np.outer(c @ a1, a1)  # remove the a1 component, then take the main remaining direction
    a2 = _top_direction(residual)
    a2 = a2 - (a2 @ a1) * a1
    a2 /= max(np.linalg.norm(a2), 1e-12)
    return Basis2D(origin=c.mean(axis=0), axes=np.stack([a1, a2]), name="mean displacement axis")


def _image_batch(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> a [1, 3, H, W] tensor (a copy)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None]


def lab_views(
    model,
    image: np.ndarray,
    values: list[SliderValues],
    space: str,
    predictor: Predictor | None = None,
    ref: M.Reference | None = None,
) -> Displacement:
    """Augment ``image`` (uint8 [H, W, 3]) once per slider setting; views, embeddings and per-view displacement
    scores in ``space`` (``engine.eval.displacement.displace``: EquiMod's own predictor in its "equivariant"
    space, else the post-hoc ``predictor``, else none; ``ref``: the store's reference, for the per-view relative
    invariance). ConfigError if the model has no such space."""
    device = str(next(model.parameters()).device)
    hw = (int(image.shape[0]), int(image.shape[1]))
    size = int(getattr(model, "image_size", hw[0]))
    params = cat_params([compose_params(v, hw, size, device) for v in values])
    return displace(model, _image_batch(image), params, space, predictor, ref)


@dataclass(frozen=True)
class SweepCurve:
    """One model's displacement along a family's sweep grid, or the reason it has none."""

    model: str
    family: str
    strengths: np.ndarray  # [S]
    norm: np.ndarray  # [S] |Δ| (nan when ``error``)
    cos: (
        np.ndarray
    )  # [S] cos(Δ, Δ̂) of the model's predictor (nan without predictors, when not encoded or ``error``)
    error: str = ""  # empty when measured, else one line saying why not (e.g. the model lacks the space)
    guesses: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # baseline -> [S] cos(Δ, Δ̂)
    rel_norm: np.ndarray | None = None  # [S] |Δ| / |z(x)|: scale-free, so models of other widths compare

    @staticmethod
    def relative(d: Displacement) -> np.ndarray:
        """|Δ| / |z(x)| of each view of one image (nan where the image embeds at zero)."""
        base = np.linalg.norm(np.asarray(d.z0, dtype=np.float64), axis=1)
        return np.divide(d.norm, base, out=np.full_like(base, np.nan), where=base > 0)


def sweep_models(
    models: Mapping[str, object],
    image: np.ndarray,
    values: SliderValues,
    family: str,
    space: str,
    predictors: Mapping[str, LabPredictors] | None = None,
) -> list[SweepCurve]:
    """Sweep ``family`` from ``values`` on one image for every model (label -> model), in ``space``. A model that
    lacks the space (or fails) gets a curve with ``error`` set: never a silent switch to another space. Models
    with ``predictors`` (label -> the space's predictors) get cos(Δ, Δ̂) and the baselines' cosines."""
    grid, vals = sweep_values(values, family)
    name = find_family(family).name
    nan = np.full(len(grid), np.nan)
    blind = name in M.not_encoded_families()  # no predictor is told this family's strength: no cos to draw
    curves = []
    for label, model in models.items():
        lp = (predictors or {}).get(label)
        try:
            if lp is None:  # EquiMod's own predictor in its equivariant space, else no cos
                d = lab_views(model, image, vals, space)
                cos = nan if blind else d.cos
                curves.append(SweepCurve(label, name, grid, d.norm, cos, rel_norm=SweepCurve.relative(d)))
                continue
            res = lab_predictions(model, image, vals, space, lp)
        except EquiLabError as e:
            curves.append(SweepCurve(label, name, grid, nan, nan, f"{label}: {e.reason}"))
            continue
        guesses = {k: v for k, v in res.cos.items() if k != M.METHOD}
        rel = SweepCurve.relative(res.disp)
        curves.append(SweepCurve(label, name, grid, res.disp.norm, res.cos[M.METHOD], "", guesses, rel))
    return curves


def default_strength(family: str) -> float:
    """A non-neutral strength of ``family`` to open on: the sweep value farthest from the identity (modulo the
    period for circular families: 180° for rotation, never 360°)."""
    fam = find_family(family)

    def dist(s: float) -> float:
        d = abs(s - fam.neutral)
        return min(d, fam.period - d) if fam.period else d

    return float(max(fam.sweep, key=dist))


def not_encoded(values: SliderValues) -> tuple[str, ...]:
    """Families set away from identity in ``values`` that the 15-d parameter vector cannot encode (blur, rotation):
    for those no predictor can know what was applied."""
    missing = M.not_encoded_families()
    return tuple(n for n, s in values.strengths().items() if n in missing and not _neutral(FAMILIES[n], s))


def _neutral(fam: Family, s: float) -> bool:
    return fam.same(float(s), fam.neutral)


def _cos(delta: np.ndarray, delta_hat: np.ndarray, tol: float) -> np.ndarray:
    """Row cosine of delta and delta_hat; nan where delta or delta_hat is zero (at ``tol``) or delta_hat is nan."""
    nd, nh = np.linalg.norm(delta, axis=1), np.linalg.norm(delta_hat, axis=1)
    ok = (nd > tol) & (nh > tol) & np.isfinite(nh)
    out = np.full(len(delta), np.nan)
    out[ok] = (delta[ok] * delta_hat[ok]).sum(axis=1) / (nd[ok] * nh[ok])
    return out


@dataclass(frozen=True)
class LabViews:
    """The lab's views of one image: actual displacements and, per predictor, Δ̂ and cos(Δ, Δ̂) per view."""

    disp: Displacement  # actual Δ, the views, per-view relative invariance (with a store reference)
    delta_hat: dict[str, np.ndarray]  # SHOWN name -> [B, D]; rows of nan where that predictor cannot say
    cos: dict[str, np.ndarray]  # SHOWN name -> [B] cos(Δ, Δ̂); nan when Δ or Δ̂ is zero or absent
    groups: tuple  # per view: (family, fitted strength) of a one-family view, else None
    not_encoded: tuple[tuple[str, ...], ...]  # per view: the families set that the parameter vector lacks
    centred_cos: np.ndarray | None = None  # per view cos(e(a(x)) - mean, e(x) - mean); with a store reference
    between_cos: float = float("nan")  # the same cosine between different images (its baseline)

    def moved(self, i: int) -> bool:
        """Whether view ``i`` moved at all (Δ not zero)."""
        return bool(self.disp.norm[i] > M.zero_tol(self.disp.z0, self.disp.z))


def lab_predictions(
    model,
    image: np.ndarray,
    values: list[SliderValues],
    space: str,
    predictors: LabPredictors | None,
    ref: M.Reference | None = None,
) -> LabViews:
    """:func:`lab_views` plus, per view, the method's Δ̂ and the mean-displacement and parameters-only baselines
    (``predictors`` from ``engine.lab.predictors.ensure_predictors``). Views of a family the parameter vector does
    not encode get no prediction from the method or the parameters (nan rows); the mean displacement of their
    family and strength stays (it knows the group, not the parameters)."""
    device = str(next(model.parameters()).device)
    hw = (int(image.shape[0]), int(image.shape[1]))
    size = int(getattr(model, "image_size", hw[0]))
    params = cat_params([compose_params(v, hw, size, device) for v in values])
    disp = displace(model, _image_batch(image), params, space, None, ref)
    missing = tuple(not_encoded(v) for v in values)
    centred = None if ref is None or ref.reason else M.item_centred_cos(disp.z0, disp.z, ref)
    between = float("nan") if ref is None else ref.between_cos
    if predictors is None:
        return LabViews(disp, {}, {}, (None,) * len(values), missing, centred, between)
    p = equimod_vector(params, hw).float().cpu().numpy()
    groups = tuple(predictors.group_of(v.strengths()) for v in values)
    preds = predictors.predict(disp.z0, p, groups)
    blind = np.array([bool(m) for m in missing])
    delta, tol = disp.actual, M.zero_tol(disp.z0, disp.z)
    out, cos = {}, {}
    for name in SHOWN:
        dh = np.array(preds[name], dtype=np.float64)
        if name != "mean_delta":
            dh[blind] = np.nan
        else:
            dh[blind & np.array([g is None for g in groups])] = (
                np.nan
            )  # a composed view with rotation or blur
        out[name], cos[name] = dh, _cos(delta, dh, tol)
    return LabViews(disp, out, cos, groups, missing, centred, between)


@dataclass(frozen=True)
class ItemGain:
    """Per store item under one family and strength: |Δ|, relative invariance and the gain in cos(Δ, Δ̂) of the
    method over the strongest model-free baseline (``strongest``, by mean cos over the items)."""

    norm: np.ndarray  # [N]
    rel_invariance: np.ndarray  # [N] (nan without a usable reference)
    gain: np.ndarray  # [N] cos(Δ, Δ̂_method) - cos(Δ, Δ̂_strongest); nan where undefined
    cos: dict[str, np.ndarray]  # predictor -> [N] cos(Δ, Δ̂)
    strongest: str  # the baseline subtracted ("" when undefined)
    reason: str = ""  # why ``gain`` is nan, or empty


def family_gain(
    model,
    images: np.ndarray,
    family: str,
    strength: float,
    space: str,
    predictors: LabPredictors,
    ref: M.Reference | None = None,
    batch: int = 512,
) -> ItemGain:
    """:class:`ItemGain` of every image (uint8 [N, H, W, 3]) under one family at ``strength`` (all else identity).
    The baselines are the mean displacement of the family and strength, parameters only and image only."""
    fam = find_family(family)
    device = str(next(model.parameters()).device)
    hw = (int(images.shape[1]), int(images.shape[2]))
    size = int(getattr(model, "image_size", hw[0]))
    group = predictors.group_of({fam.name: strength})
    names = (M.METHOD, "mean_delta", "params_only", "image_only")
    norms, inv, deltas, starts, hats = [], [], [], [], {k: [] for k in names}
    for s in range(0, len(images), batch):
        x = torch.from_numpy(np.array(images[s : s + batch], dtype=np.uint8)).permute(0, 3, 1, 2)
        params = fam.params(strength, len(x), hw, size, device)
        d = displace(model, x, params, space, None, ref)
        p = equimod_vector(params, hw).float().cpu().numpy()
        preds = predictors.predict(d.z0, p, (group,) * len(x))
        norms.append(d.norm)
        inv.append(d.rel_invariance if d.rel_invariance is not None else np.full(len(x), np.nan))
        deltas.append(d.actual)
        starts.append(d.z0)
        for k in names:
            hats[k].append(preds[k])
    delta = np.concatenate(deltas)
    z0 = np.concatenate(starts)
    # as the lab and the measures: 1e-6 of the embeddings' RMS norm, not Δ's own
    tol = M.zero_tol(z0, z0 + delta)
    cos = {k: _cos(delta, np.concatenate(v), tol) for k, v in hats.items()}
    nan = np.full(len(delta), np.nan)
    norm, rel = np.concatenate(norms), np.concatenate(inv)
    if _neutral(fam, strength):
        return ItemGain(norm, rel, nan, cos, "", "the identity: nothing moves, nothing to predict")
    if fam.name in M.not_encoded_families():
        why = f"{fam.label} is not encoded by the parameter vector: the predictors see the identity"
        return ItemGain(norm, rel, nan, cos, "", why)
    means = {k: float(np.nanmean(cos[k])) if np.isfinite(cos[k]).any() else -np.inf for k in names[1:]}
    strongest = max(means, key=means.get)
    if not np.isfinite(cos[M.METHOD]).any() or not np.isfinite(means[strongest]):
        return ItemGain(norm, rel, nan, cos, "", "the actual displacement is zero: the embedding ignores it")
    return ItemGain(norm, rel, cos[M.METHOD] - cos[strongest], cos, strongest)
