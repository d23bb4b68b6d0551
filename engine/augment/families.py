"""The ONE table of augmentation families: one op varied, all else identity.

Each family names an op, its human label, its range [low, high], its neutral (identity) strength, the strengths
swept along it and how a strength maps onto ``AugParams`` (its setter). The lab's sliders and sweeps, the
displacement evaluation's sweeps, the map's colouring and the study reports all read this table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.augment.params import AugParams, identity_params
from engine.core.errors import ConfigError

Setter = Callable[[AugParams, Tensor, tuple[int, int]], dict[str, Tensor]]


@dataclass(frozen=True)
class Family:
    """One augmentation family: ``params(strength, ...)`` = identity with this op set to ``strength``."""

    name: str
    label: str  # what a person reads: slider labels, sweep menus, plot titles
    low: float
    high: float
    neutral: float  # strength giving the identity
    sweep: tuple[float, ...]  # strengths swept by the lab and the evaluation; the identity appears once
    setter: Setter  # (params, strength column [n], image_hw) -> fields to replace
    step: float  # slider step
    period: float | None = None  # circular families: strengths equal modulo ``period`` are the same op
    flag: bool = False  # on/off op: 0 = off, 1 = on

    def apply_to(self, p: AugParams, strength: float | Tensor, image_hw: tuple[int, int]) -> AugParams:
        """``p`` with this family's op set to ``strength`` (a number or one value per row); other ops kept."""
        s = torch.as_tensor(strength, dtype=torch.float32, device=p.crop.device).expand(len(p)).clone()
        return dataclasses.replace(p, **self.setter(p, s, image_hw))

    def params(
        self,
        strength: float,
        n: int,
        image_hw: tuple[int, int],
        size: int,
        device: torch.device | str = "cpu",
    ) -> AugParams:
        """``n`` identical rows of identity params with this family's op at ``strength``."""
        return self.apply_to(identity_params(n, image_hw, size, device), float(strength), image_hw)

    @property
    def coarse(self) -> tuple[float, ...]:
        """Every second strength of :attr:`sweep` counted from the neutral one (the evaluation's cheaper grid);
        on/off families and grids of at most 5 keep all their strengths."""
        if len(self.sweep) <= 5:
            return self.sweep
        i = self.sweep.index(self.neutral)
        return tuple(s for j, s in enumerate(self.sweep) if (j - i) % 2 == 0)

    def same(self, a: float, b: float) -> bool:
        """Whether strengths ``a`` and ``b`` give the same op (equal, or equal modulo the period)."""
        if self.period is None:
            return math.isclose(a, b, abs_tol=1e-9)
        d = (a - b) % self.period
        return math.isclose(d, 0.0, abs_tol=1e-9) or math.isclose(d, self.period, abs_tol=1e-9)

    def clamp(self, strength: float) -> float:
        """``strength`` brought into [low, high] (wrapped first for circular families)."""
        s = float(strength)
        if self.period is not None:
            s = (s - self.low) % self.period + self.low
        return min(max(s, self.low), self.high)


def _centre_crop(p: AugParams, s: Tensor, hw: tuple[int, int]) -> dict[str, Tensor]:
    """A centred box keeping the image's aspect and a fraction ``s`` of its area."""
    h, w = hw
    side = s.clamp(1e-4, 1.0).sqrt()
    ch, cw = side * h, side * w
    return {"crop": torch.stack([(h - ch) / 2, (w - cw) / 2, ch, cw], dim=1)}


def _colour(field: str, neutral: float) -> Setter:
    """Set one colour factor; jitter is on when this or an earlier-set factor is not neutral."""

    def setter(p: AugParams, s: Tensor, hw: tuple[int, int]) -> dict[str, Tensor]:
        return {field: s, "jitter": p.jitter | (s != neutral)}

    return setter


def _flag(field: str) -> Setter:
    return lambda p, s, hw: {field: s >= 0.5}


def _grid(lo: float, hi: float, n: int, circular: bool) -> tuple[float, ...]:
    """``n`` evenly spaced strengths over [lo, hi], or over [lo, hi) for a circular family (hi = lo)."""
    pts = torch.linspace(lo, hi, n + 1)[:-1] if circular else torch.linspace(lo, hi, n)
    return tuple(round(float(v), 6) for v in pts.tolist())


def _family(
    name: str,
    label: str,
    low: float,
    high: float,
    neutral: float,
    setter: Setter,
    step: float,
    n: int = 9,
    period: float | None = None,
) -> Family:
    circular = period is not None
    return Family(
        name=name,
        label=label,
        low=low,
        high=high,
        neutral=neutral,
        sweep=_grid(low, high, n - 1 if circular else n, circular),
        setter=setter,
        step=step,
        period=period,
    )


def _on_off(name: str, label: str, field: str) -> Family:
    return Family(name, label, 0.0, 1.0, 0.0, (0.0, 1.0), _flag(field), step=1.0, flag=True)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        _family("crop_scale", "Crop scale", 0.2, 1.0, 1.0, _centre_crop, step=0.01),
        _on_off("flip", "Horizontal flip", "flip"),
        _family("brightness", "Brightness", 0.2, 1.8, 1.0, _colour("brightness", 1.0), step=0.05),
        _family("contrast", "Contrast", 0.2, 1.8, 1.0, _colour("contrast", 1.0), step=0.05),
        _family("saturation", "Saturation", 0.0, 2.0, 1.0, _colour("saturation", 1.0), step=0.05),
        _family("hue", "Hue shift", -0.5, 0.5, 0.0, _colour("hue", 0.0), step=0.01, period=1.0),
        _on_off("grayscale", "Grayscale", "gray"),
        _family("blur", "Blur σ", 0.0, 2.0, 0.0, lambda p, s, hw: {"blur": s > 0, "sigma": s}, step=0.1),
        _family(
            "rotation", "Rotation angle", 0.0, 360.0, 0.0, lambda p, s, hw: {"rotation": s}, 5.0, period=360.0
        ),
    )
}


def find_family(name: str) -> Family:
    """The family called ``name`` or labelled ``name`` (any case; spaces or underscores), else ConfigError."""
    key = str(name).strip().lower().replace("_", " ")
    for f in FAMILIES.values():
        if key in (f.name.replace("_", " "), f.label.lower()):
            return f
    raise ConfigError(f"unknown augmentation family {name!r}: choose from {sorted(FAMILIES)}")


def compose(
    strengths: dict[str, float], n: int, image_hw: tuple[int, int], size: int, device="cpu"
) -> AugParams:
    """``n`` rows of identity params with every named family's op set (families absent stay neutral)."""
    p = identity_params(n, image_hw, size, device)
    for name, s in strengths.items():
        p = find_family(name).apply_to(p, s, image_hw)
    return p
