"""Augmentation recipes as data: one frozen dataclass per view recipe, validated on construction (docs/methods.md §8.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from engine.core.errors import ConfigError

INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class Recipe:
    """How to sample one augmented view; probabilities in [0, 1], jitter strengths as in torchvision ColorJitter.

    ``size`` is the output side S; the crop box is sampled like torchvision ``RandomResizedCrop.get_params``.
    ``rotations`` lists the angles (degrees) to draw uniformly from; empty = no rotation (E-SSL rotates with
    ``rotate4`` instead).
    """

    size: int = 32
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bicubic"
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float = 0.0
    sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    rotations: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(f.name, getattr(self, f.name))

    @property
    def jitter_ranges(self) -> dict[str, tuple[float, float]]:
        """Sampling interval of each colour factor (torchvision ColorJitter's ``_check_input``)."""
        return {
            "brightness": (max(0.0, 1 - self.brightness), 1 + self.brightness),
            "contrast": (max(0.0, 1 - self.contrast), 1 + self.contrast),
            "saturation": (max(0.0, 1 - self.saturation), 1 + self.saturation),
            "hue": (-self.hue, self.hue),
        }


def _bad(name: str, value: object, want: str) -> ConfigError:
    return ConfigError(f"augmentation recipe: {name}={value!r} is invalid; {want}.")


def _check(name: str, v: object) -> None:
    """Raise ConfigError naming the field when a recipe value is out of range."""
    if name == "size" and not (isinstance(v, int) and v >= 1):
        raise _bad(name, v, "use a positive integer output side")
    if name == "interpolation" and v not in INTERPOLATIONS:
        raise _bad(name, v, f"choose from {INTERPOLATIONS}")
    if name.endswith("_p") and not (isinstance(v, int | float) and 0.0 <= v <= 1.0):
        raise _bad(name, v, "use a probability in [0, 1]")
    if name in ("brightness", "contrast", "saturation") and not (isinstance(v, int | float) and v >= 0):
        raise _bad(name, v, "use a non-negative jitter strength")
    if name == "hue" and not (isinstance(v, int | float) and 0.0 <= v <= 0.5):
        raise _bad(name, v, "use a hue strength in [0, 0.5]")
    if name in ("scale", "ratio", "sigma"):
        ok = isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int | float) for x in v)
        ok = ok and 0 < v[0] <= v[1] and all(math.isfinite(x) for x in v)
        if ok and name == "scale":
            ok = v[1] <= 1.0
        if not ok:
            want = "use (low, high) with 0 < low <= high" + (" <= 1" if name == "scale" else "")
            raise _bad(name, v, want)
    if name == "rotations" and not (isinstance(v, tuple) and all(isinstance(x, int | float) for x in v)):
        raise _bad(name, v, "use a tuple of angles in degrees")


CAUG_ANGLES: tuple[float, ...] = tuple(float(a) for a in range(-90, 91))  # CLeVER's CAug rotation range

# The CIFAR recipes of the papers; `dataclasses.replace(r, size=...)` scales the output to another image size.
RECIPES: dict[str, Recipe] = {
    # EquiMod / E-SSL CIFAR SimCLR views (docs/methods.md §1.3, §2.3): RRC(32, 0.2-1, bicubic), flip, jitter p=.8, gray .2.
    "simclr": Recipe(),
    # EquiMod's BYOL branch, view 1 (§2.3): saturation 0.2, blur p=1 (kernel from the output size), no solarize.
    "byol": Recipe(saturation=0.2, blur_p=1.0),
    # ... and view 2: blur p=0.1, solarize p=0.2.
    "byol_view2": Recipe(saturation=0.2, blur_p=0.1, solarize_p=0.2),
    # The generated `shapes` dataset: SimCLR's full-strength colour distortion (brightness/contrast/saturation
    # 0.8) with hue over the whole circle. Each shapes image is one flat colour on another, so with CIFAR's
    # hue +-0.1 the colour pair alone tells instances apart and SimCLR learns colour, not shape (backbone kNN
    # on shape class 0.14 after 10 epochs vs 0.34 after 8 with this recipe; width 0.125, 5k images, lr 0.5).
    "shapes": Recipe(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.5),
    # E-SSL's small rotation view (§1.3): RRC(16, 0.2-1) + flip + jitter + gray; x4 rotations come from rotate4.
    "essl_rotation": Recipe(size=16),
    # CLeVER's CAug (§3.4, `aug1_2`): the base recipe plus RandomRotation(-90°, 90°) on every view. The angle is
    # drawn uniformly from the whole degrees -90..90 (a 1° grid; torchvision draws a continuous angle).
    "simclr_caug": Recipe(rotations=CAUG_ANGLES),
    # The colour question (`shapes_colour`: hues from a 4-colour palette): shapes' recipe with CIFAR's hue
    # strength (±0.1, under half a palette step of 0.25), so colour survives the views but no colour pair is
    # unique to an image.
    "shapes_colour": Recipe(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.1),
    "shapes_caug": Recipe(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.5, rotations=CAUG_ANGLES),
    # The shapes recipe without its random grayscale: an invariance objective that no longer asks to ignore gray,
    # beside a head that predicts it (study `grayscale_conflict`, docs/results.md §5).
    "shapes_nogray": Recipe(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.5, gray_p=0.0),
}


def get_recipe(name: str, size: int | None = None) -> Recipe:
    """``RECIPES[name]`` (with its output side set to ``size`` when given), or ConfigError listing the choices."""
    if name not in RECIPES:
        raise ConfigError(f"unknown augmentation recipe {name!r}: choose from {sorted(RECIPES)}")
    r = RECIPES[name]
    return r if size is None or r.size == size else replace(r, size=int(size))


def light_recipe(size: int) -> Recipe:
    """The rotation-pretext reference's light augmentation (docs/methods.md §4.2): crop + flip, no colour, no gray."""
    return replace(get_recipe("simclr", size), jitter_p=0.0, gray_p=0.0, scale=(0.6, 1.0))


# The recipe of each dataset whose views need another one than ``simclr`` (the trainer's default for methods that
# take a ``recipe`` option, and the recipe that methods without one are measured with on that dataset).
DATASET_RECIPES: dict[str, str] = {
    "shapes": "shapes",
    "shapes_upright": "shapes",
    "shapes_colour": "shapes_colour",
}


def dataset_recipe(dataset: str | None) -> str:
    """The recipe name of ``dataset`` (:data:`DATASET_RECIPES`, else ``simclr``)."""
    return DATASET_RECIPES.get(str(dataset), "simclr") if dataset else "simclr"


def training_recipe(model: Any, dataset: str | None = None) -> Recipe:
    """The recipe a built method's views are drawn from, at its image size: its config's ``recipe`` when it has
    one, else the recipe of ``dataset`` (:func:`dataset_recipe`; ``simclr`` when no dataset is given).

    ``model`` is any object with ``config`` and ``image_size`` (a method from ``engine.methods.build_method``,
    e.g. loaded from a checkpoint, whose config records the recipe). Methods without a ``recipe`` option
    (``none``, ``rotation``) are thus measured with the same views as the trained arms of their dataset.
    """
    name = getattr(getattr(model, "config", None), "recipe", None) or dataset_recipe(dataset)
    return get_recipe(name, int(getattr(model, "image_size", 32)))


def for_image(recipe: Recipe, image_hw: tuple[int, int]) -> Recipe:
    """``recipe`` with its output side scaled from the 32 px CIFAR reference to an image of ``image_hw``."""
    size = max(1, round(recipe.size * min(image_hw) / 32))
    return recipe if size == recipe.size else replace(recipe, size=size)
