"""Augmentation-lab logic for the dashboard: slider values -> AugParams, sweeps, random views drawn from a model's
own training recipe, the views of one image with their displacements, multi-model sweeps and linear 2-D bases.

The sliders, their ranges and the sweeps come from the one families table (``engine.augment.FAMILIES``); the
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

from engine.augment import FAMILIES, AugParams, Recipe, cat_params, compose, find_family, sample_params
from engine.core.errors import ConfigError, EquiLabError
from engine.eval.displacement import Displacement, Predictor, displace


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
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    v = vt[0]
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
    model, image: np.ndarray, values: list[SliderValues], space: str, predictor: Predictor | None = None
) -> Displacement:
    """Augment ``image`` (uint8 [H, W, 3]) once per slider setting; views, embeddings and per-view displacement
    scores in ``space`` (``engine.eval.displacement.displace``: EquiMod's own predictor in its "equivariant"
    space, else the post-hoc ``predictor``, else none). ConfigError if the model has no such space."""
    device = str(next(model.parameters()).device)
    hw = (int(image.shape[0]), int(image.shape[1]))
    size = int(getattr(model, "image_size", hw[0]))
    params = cat_params([compose_params(v, hw, size, device) for v in values])
    return displace(model, _image_batch(image), params, space, predictor)


@dataclass(frozen=True)
class SweepCurve:
    """One model's displacement along a family's sweep grid, or the reason it has none."""

    model: str
    family: str
    strengths: np.ndarray  # [S]
    norm: np.ndarray  # [S] |Δ| (nan when ``error``)
    cos: np.ndarray  # [S] cos(Δ, Δ̂) (nan without a predictor or when ``error``)
    error: str = ""  # empty when measured, else one line saying why not (e.g. the model lacks the space)


def sweep_models(
    models: Mapping[str, object], image: np.ndarray, values: SliderValues, family: str, space: str
) -> list[SweepCurve]:
    """Sweep ``family`` from ``values`` on one image for every model (label -> model), in ``space``. A model that
    lacks the space (or fails) gets a curve with ``error`` set: never a silent switch to another space."""
    grid, vals = sweep_values(values, family)
    name = find_family(family).name
    nan = np.full(len(grid), np.nan)
    curves = []
    for label, model in models.items():
        try:
            d = lab_views(model, image, vals, space)
        except EquiLabError as e:
            curves.append(SweepCurve(label, name, grid, nan, nan, f"{label}: {e.reason}"))
            continue
        curves.append(SweepCurve(label, name, grid, d.norm, d.cos))
    return curves


def family_displacements(
    model, images: np.ndarray, family: str, strength: float, space: str, batch: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Per-item (|Δ|, invariance cos) of ``images`` (uint8 [N, H, W, 3]) under one family at ``strength``: two
    float [N] arrays (the map colours every store item by them)."""
    fam = find_family(family)
    device = str(next(model.parameters()).device)
    hw = (int(images.shape[1]), int(images.shape[2]))
    size = int(getattr(model, "image_size", hw[0]))
    norms, cos = [], []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(np.array(images[s : s + batch], dtype=np.uint8)).permute(0, 3, 1, 2)
        d = displace(model, x, fam.params(strength, len(x), hw, size, device), space)
        norms.append(d.norm)
        cos.append(d.invariance)
    return np.concatenate(norms), np.concatenate(cos)
