"""Augmentation-lab logic for the dashboard: slider values -> AugParams, sweeps, and linear 2-D bases.

Displacement arrows are drawn in a LINEAR basis (the store's PCA plane, or the axis of the mean displacement
plus the cloud's main direction orthogonal to it) because UMAP is non-linear: distances and directions of
transformed new points there mean nothing. Everything here is pure; no Streamlit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from engine.augment import FAMILIES, apply, equimod_vector, identity_params
from engine.core.errors import ConfigError


@dataclass(frozen=True)
class SliderValues:
    """One augmentation as the lab's sliders describe it (identity by default)."""

    crop_area: float = 1.0  # fraction of the image area kept by the square crop, (0, 1]
    crop_cx: float = 0.5  # crop centre, fraction of width (clamped so the box fits)
    crop_cy: float = 0.5  # crop centre, fraction of height
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0  # shift in turns, [-0.5, 0.5]
    gray: bool = False
    blur_sigma: float = 0.0  # 0 = no blur
    rotation: float = 0.0  # degrees


# name -> (field of SliderValues, low, high): the parameters a sweep can vary.
SWEEPS: dict[str, tuple[str, float, float]] = {
    "hue shift": ("hue", -0.5, 0.5),
    "crop scale": ("crop_area", 0.08, 1.0),
    "rotation angle": ("rotation", -180.0, 180.0),
    "brightness": ("brightness", 0.2, 1.8),
    "contrast": ("contrast", 0.2, 1.8),
    "saturation": ("saturation", 0.0, 2.0),
    "blur sigma": ("blur_sigma", 0.0, 2.0),
}


def crop_box(values: SliderValues, image_hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """(top, left, height, width) in source pixels of the square crop the sliders describe."""
    h, w = image_hw
    if not 0.0 < values.crop_area <= 1.0:
        raise ConfigError(f"crop_area={values.crop_area} must be in (0, 1]")
    side = float(np.sqrt(values.crop_area) * min(h, w))
    top = float(np.clip(values.crop_cy * h - side / 2, 0.0, h - side))
    left = float(np.clip(values.crop_cx * w - side / 2, 0.0, w - side))
    return top, left, side, side


def compose_params(values: SliderValues, image_hw: tuple[int, int], size: int, device: str = "cpu"):
    """An ``engine.augment.AugParams`` for one image (B = 1) reproducing the slider values exactly."""

    base = identity_params(1, image_hw, size, device)

    def t(v, dtype=torch.float32):
        return torch.tensor([v], dtype=dtype, device=device)

    colour = (values.brightness, values.contrast, values.saturation, values.hue) != (1.0, 1.0, 1.0, 0.0)
    return dataclasses.replace(
        base,
        crop=torch.tensor([crop_box(values, image_hw)], dtype=torch.float32, device=device),
        flip=t(values.flip, torch.bool),
        jitter=t(colour, torch.bool),
        brightness=t(values.brightness),
        contrast=t(values.contrast),
        saturation=t(values.saturation),
        hue=t(values.hue),
        gray=t(values.gray, torch.bool),
        blur=t(values.blur_sigma > 0, torch.bool),
        sigma=t(max(values.blur_sigma, 1e-3)),
        rotation=t(values.rotation),
    )


def sweep_values(values: SliderValues, sweep: str, n: int = 9) -> tuple[np.ndarray, list[SliderValues]]:
    """``n`` copies of ``values`` with the swept parameter spread evenly over its range: (grid, values)."""
    if sweep not in SWEEPS:
        raise ConfigError(f"unknown sweep {sweep!r}: choose from {sorted(SWEEPS)}")
    field, lo, hi = SWEEPS[sweep]
    grid = np.linspace(lo, hi, n)
    return grid, [dataclasses.replace(values, **{field: float(v)}) for v in grid]


def random_values(seed: int) -> SliderValues:
    """A SimCLR-like random augmentation, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    jitter = rng.random() < 0.8
    return SliderValues(
        crop_area=float(rng.uniform(0.08, 1.0)),
        crop_cx=float(rng.uniform(0, 1)),
        crop_cy=float(rng.uniform(0, 1)),
        flip=bool(rng.random() < 0.5),
        brightness=float(rng.uniform(0.6, 1.4)) if jitter else 1.0,
        contrast=float(rng.uniform(0.6, 1.4)) if jitter else 1.0,
        saturation=float(rng.uniform(0.6, 1.4)) if jitter else 1.0,
        hue=float(rng.uniform(-0.1, 0.1)) if jitter else 0.0,
        gray=bool(rng.random() < 0.2),
        blur_sigma=0.0,
        rotation=0.0,
    )


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


@dataclass(frozen=True)
class DisplacementMetrics:
    """Displacement of one view: ``delta = z(view) - z(original)``, ``delta_hat`` = predicted."""

    norm: float  # |delta|
    cos: float  # cos(delta, delta_hat); nan without a predictor
    rel_err: float  # |delta_hat - delta| / |delta|; nan without a predictor
    invariance: float  # cos(z(original), z(view)): 1 = perfectly invariant


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 1e-12 else float("nan")


def displacement_metrics(
    z0: np.ndarray, z1: np.ndarray, z_hat: np.ndarray | None = None
) -> DisplacementMetrics:
    """Metrics of one view from the original's embedding, the view's, and the predicted view embedding."""
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    delta = z1 - z0
    norm = float(np.linalg.norm(delta))
    if z_hat is None:
        return DisplacementMetrics(norm=norm, cos=float("nan"), rel_err=float("nan"), invariance=_cos(z0, z1))
    delta_hat = np.asarray(z_hat, np.float64) - z0
    rel = float(np.linalg.norm(delta_hat - delta) / norm) if norm > 1e-12 else float("nan")
    return DisplacementMetrics(norm=norm, cos=_cos(delta, delta_hat), rel_err=rel, invariance=_cos(z0, z1))


@dataclass(frozen=True)
class LabViews:
    """Embeddings of one original and its views in one space, plus per-view displacement metrics."""

    views: np.ndarray  # float [V, 3, S, S] in [0, 1]: the augmented images
    z0: np.ndarray  # float [D]: the original's embedding
    z: np.ndarray  # float [V, D]: the views' embeddings
    z_hat: np.ndarray | None  # float [V, D]: predicted view embeddings, None without a predictor
    metrics: tuple[DisplacementMetrics, ...]
    predictor: str  # "equimod", "post-hoc" or "none"


def lab_views(model, image: np.ndarray, values: list[SliderValues], space: str, predictor=None) -> LabViews:
    """Augment ``image`` (uint8 [H, W, 3]) once per slider setting and measure the displacements in ``space``.

    Uses the very same ``engine.augment.apply`` and ``equimod_vector`` as training. The prediction comes from
    EquiMod's own predictor in its "equivariant" space, else from ``predictor(z0 [V, D], p [V, 15]) -> [V, D]``
    (a post-hoc predictor), else there is none.
    """

    device = next(model.parameters()).device
    size = int(getattr(model, "image_size", image.shape[0]))
    hw = (int(image.shape[0]), int(image.shape[1]))
    x = (
        torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].to(device)
    )  # [1, 3, H, W] copy
    params = [compose_params(v, hw, size, str(device)) for v in values]
    with torch.no_grad():
        x0 = apply(x, identity_params(1, hw, size, str(device)))
        views = torch.cat([apply(x, p) for p in params])  # [V, 3, S, S]
        emb = model.embed(torch.cat([x0, views]))
        if space not in emb:
            raise ConfigError(f"space {space!r} not produced by this model: choose from {sorted(emb)}")
        zs = emb[space].float().cpu().numpy()
        pvec = torch.cat([equimod_vector(p, hw) for p in params]).float()
        z0 = zs[:1].repeat(len(values), axis=0)
        if space == "equivariant" and hasattr(model, "predict"):
            z_hat, kind = (
                model.predict(emb[space][:1].expand(len(values), -1), pvec.to(device)).cpu().numpy(),
                "equimod",
            )
        elif predictor is not None:
            z_hat, kind = np.asarray(predictor(z0, pvec.numpy()), dtype=np.float32), "post-hoc"
        else:
            z_hat, kind = None, "none"
    metrics = tuple(
        displacement_metrics(zs[0], zs[i + 1], None if z_hat is None else z_hat[i])
        for i in range(len(values))
    )
    return LabViews(
        views=views.cpu().numpy(), z0=zs[0], z=zs[1:], z_hat=z_hat, metrics=metrics, predictor=kind
    )


def displacement_scores(
    model, images: np.ndarray, family: str, strength: float, space: str, batch: int = 512
):
    """Per-item |Δ| and invariance cos under one augmentation family at ``strength``: two float [N] arrays.

    ``images`` uint8 [N, H, W, 3]; the map colours every item of a store by these (computed on all N items).
    """

    if family not in FAMILIES:
        raise ConfigError(f"unknown augmentation family {family!r}: choose from {sorted(FAMILIES)}")
    device = next(model.parameters()).device
    size = int(getattr(model, "image_size", images.shape[1]))
    hw = (int(images.shape[1]), int(images.shape[2]))
    norms, cos = [], []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = (
                torch.from_numpy(np.array(images[s : s + batch], dtype=np.uint8))
                .permute(0, 3, 1, 2)
                .to(device)
            )
            n = len(x)
            z0 = model.embed(apply(x, identity_params(n, hw, size, device)))
            if space not in z0:
                raise ConfigError(f"space {space!r} not produced by this model: choose from {sorted(z0)}")
            zt = model.embed(apply(x, FAMILIES[family].params(strength, n, hw, size, device)))[space].float()
            a = z0[space].float()
            norms.append((zt - a).norm(dim=1).cpu().numpy())
            cos.append(torch.nn.functional.cosine_similarity(zt, a, dim=1).cpu().numpy())
    return np.concatenate(norms), np.concatenate(cos)
