"""Understanding-ESSL's seven equivariant pretext transformations, batched and replayable from their labels.

Each task maps an image and a label k in ``range(n_labels)`` to a transformed image; label 0 is always the
identity. Ops take ``[B, 3, H, W]`` uint8 or float images (float in [0, 1]) on any device and return the same
shape, dtype and device (kaotty/Understanding-ESSL ``ESSL/equivariant_tasks.py``; docs/methods.md §1.5, §4.2):

==========  ==  ===============================================================================================
task        k   label meaning
==========  ==  ===============================================================================================
hflip       2   1 = mirror left-right (the authors' ``horizontal_flips``)
vflip       2   1 = mirror top-bottom (``vertical_flips``)
invert      2   1 = colour inversion ``bound - x`` (bound 255 for uint8, 1 for float) (``color_inversions``)
grayscale   2   1 = ITU-R 601-2 luma (torchvision's weights) copied to all three channels (``grayscale``)
rotation    4   k quarter turns counter-clockwise, ``torch.rot90(x, k, dims=(2, 3))`` (``four_fold_rotation``)
blur        4   0 = none; 1, 2, 3 = Gaussian kernels 5, 9, 15 with sigma = 0.15 * k + 0.35 = 1.1, 1.7, 2.6
                (``four_fold_blurs``)
jigsaw      24  2x2 patches permuted by :data:`JIGSAW_PERMUTATIONS` [k] (``jigsaws``)
==========  ==  ===============================================================================================

Blur sigma: the authors call ``transforms.GaussianBlur(kernel_size=k)``, whose default draws sigma ~ U(0.1, 2.0)
afresh per image, so their label names the kernel's support, not its strength. Here every label has one fixed
sigma so an image is replayable from its label: torchvision's own functional default for a kernel of side k
(``0.15 k + 0.35``, the OpenCV rule), reflect padding, separable; uint8 results are rounded (as torchvision).

Jigsaw: the image is cut into 2x2 patches of ``H/2 x W/2`` numbered row-major (0 top-left, 1 top-right,
2 bottom-left, 3 bottom-right); label k shows, at output position p, input patch ``JIGSAW_PERMUTATIONS[k][p]``.
The table is ``itertools.permutations(range(4))`` in its lexicographic order, the same as the authors'
``jigsaw_dict`` (label 0 = identity, 23 = reversed). The authors apply it to 32 px RandomResizedCrops (16 px
patches); any even H and W works here.

:data:`PRETEXT_TASKS` maps a name to a :class:`PretextTask` ``(n_labels, apply, inverse, label_names)``;
``inverse`` is None for the lossy tasks (grayscale, blur). :func:`transform` checks and applies one task,
:func:`expand` returns every image under every label (``rotation`` gives exactly ``rotate4``'s result).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.augment.ops import grayscale as luma
from engine.augment.recipes import Recipe, get_recipe, light_recipe
from engine.core.errors import ConfigError

Op = Callable[[Tensor, Tensor], Tensor]  # (images [B, 3, H, W], labels [B] long) -> images

BLUR_KERNELS: tuple[int, ...] = (5, 9, 15)  # labels 1, 2, 3; label 0 is no blur
JIGSAW_PERMUTATIONS: tuple[tuple[int, int, int, int], ...] = tuple(itertools.permutations(range(4)))


class PretextTask(NamedTuple):
    """One registry entry: ``n_labels`` labels, ``apply(x, labels)``, optional ``inverse(x', labels)``."""

    n_labels: int
    apply: Op
    inverse: Op | None  # None: lossy (several images map to one), no inverse exists
    label_names: tuple[str, ...]


class Expanded(NamedTuple):
    """:func:`expand`'s result; unpacks as ``images, labels = expand(x, task)``."""

    images: Tensor  # [k B, C, H, W]: block j holds every image under label j
    labels: Tensor  # [k B] long


def blur_sigma(kernel: int) -> float:
    """Sigma of a Gaussian kernel of side ``kernel``: torchvision's functional default ``0.15 k + 0.35``."""
    return 0.15 * kernel + 0.35


def _bound(x: Tensor) -> float | int:
    """The image's maximum value: 1.0 for float, the dtype's maximum for integers (255 for uint8)."""
    return 1.0 if x.is_floating_point() else torch.iinfo(x.dtype).max


def _to_dtype(y: Tensor, like: Tensor) -> Tensor:
    """Float result back to ``like``'s dtype: integers rounded and clamped to their range."""
    if like.is_floating_point():
        return y.to(like.dtype)
    return y.round().clamp(0, _bound(like)).to(like.dtype)


def _by_label(x: Tensor, labels: Tensor, fns: tuple[Callable[[Tensor], Tensor], ...]) -> Tensor:
    """Apply ``fns[k]`` to the images labelled k (label 0's function is never called: identity)."""
    out = x.clone()
    for k, fn in enumerate(fns[1:], start=1):
        mask = labels == k
        if bool(mask.any()):
            out[mask] = fn(x[mask])
    return out


def _hflip(x: Tensor, labels: Tensor) -> Tensor:
    return torch.where((labels == 1)[:, None, None, None], x.flip(-1), x)


def _vflip(x: Tensor, labels: Tensor) -> Tensor:
    return torch.where((labels == 1)[:, None, None, None], x.flip(-2), x)


def _invert(x: Tensor, labels: Tensor) -> Tensor:
    return torch.where((labels == 1)[:, None, None, None], _bound(x) - x, x)


def _gray(x: Tensor) -> Tensor:
    y = luma(x.float() if not x.is_floating_point() else x)
    return _to_dtype(y, x).expand_as(x)


def _grayscale(x: Tensor, labels: Tensor) -> Tensor:
    return _by_label(x, labels, (lambda v: v, _gray))


def _rotation(x: Tensor, labels: Tensor, sign: int = 1) -> Tensor:
    return _by_label(x, labels, tuple(lambda v, k=k: torch.rot90(v, sign * k, dims=(2, 3)) for k in range(4)))


def _unrotation(x: Tensor, labels: Tensor) -> Tensor:
    return _rotation(x, labels, sign=-1)


def gaussian_blur(x: Tensor, kernel: int, sigma: float) -> Tensor:
    """Separable Gaussian blur of side ``kernel``, reflect padding (torchvision's ``gaussian_blur``)."""
    c = x.shape[1]
    y = x.float() if not x.is_floating_point() else x
    t = torch.linspace(-(kernel - 1) / 2, (kernel - 1) / 2, kernel, device=x.device, dtype=y.dtype)
    kern = torch.exp(-0.5 * (t / sigma) ** 2)
    kern = (kern / kern.sum()).expand(c, 1, kernel)
    pad = kernel // 2
    y = F.pad(y, (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, kern[:, :, None, :], groups=c)  # along width
    y = F.conv2d(y, kern[:, :, :, None], groups=c)  # along height
    return _to_dtype(y, x)


def _blur(x: Tensor, labels: Tensor) -> Tensor:
    fns = tuple(lambda v, k=k: gaussian_blur(v, k, blur_sigma(k)) for k in BLUR_KERNELS)
    return _by_label(x, labels, (lambda v: v, *fns))


def _jigsaw_table(device: torch.device) -> Tensor:
    return torch.tensor(JIGSAW_PERMUTATIONS, dtype=torch.long, device=device)  # [24, 4]


def _permute_patches(x: Tensor, perms: Tensor) -> Tensor:
    """Output patch p of image i = input patch ``perms[i, p]`` (2x2 row-major patches)."""
    b, c, h, w = x.shape
    patches = x.reshape(b, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5).reshape(b, 4, c, h // 2, w // 2)
    idx = perms[:, :, None, None, None].expand(-1, -1, c, h // 2, w // 2)
    out = patches.gather(1, idx).reshape(b, 2, 2, c, h // 2, w // 2)
    return out.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def _jigsaw(x: Tensor, labels: Tensor) -> Tensor:
    return _permute_patches(x, _jigsaw_table(x.device)[labels])


def _unjigsaw(x: Tensor, labels: Tensor) -> Tensor:
    return _permute_patches(x, _jigsaw_table(x.device)[labels].argsort(dim=1))  # inverse permutation


PRETEXT_TASKS: dict[str, PretextTask] = {
    "hflip": PretextTask(2, _hflip, _hflip, ("original", "h-flipped")),
    "vflip": PretextTask(2, _vflip, _vflip, ("original", "v-flipped")),
    "invert": PretextTask(2, _invert, _invert, ("original", "inverted")),
    "grayscale": PretextTask(2, _grayscale, None, ("colour", "grayscale")),
    "rotation": PretextTask(4, _rotation, _unrotation, ("0°", "90°", "180°", "270°")),
    "blur": PretextTask(4, _blur, None, ("sharp", *(f"blur k={k}" for k in BLUR_KERNELS))),
    "jigsaw": PretextTask(24, _jigsaw, _unjigsaw, tuple("".join(map(str, p)) for p in JIGSAW_PERMUTATIONS)),
}


def get_task(name: str) -> PretextTask:
    """The registry entry ``name``, or a ConfigError naming the choices."""
    if name not in PRETEXT_TASKS:
        raise ConfigError(f"unknown pretext task {name!r}; choose from {sorted(PRETEXT_TASKS)}.")
    return PRETEXT_TASKS[name]


def _check(x: Tensor, task: str, labels: Tensor | None = None) -> PretextTask:
    spec = get_task(task)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ConfigError(f"pretext {task!r} needs images [B, 3, H, W]; got shape {tuple(x.shape)}.")
    h, w = x.shape[-2:]
    if task == "rotation" and h != w:
        raise ConfigError(f"pretext 'rotation' needs square images; got {h}x{w}.")
    if task == "jigsaw" and (h % 2 or w % 2):
        raise ConfigError(f"pretext 'jigsaw' needs even height and width (2x2 patches); got {h}x{w}.")
    if task == "blur" and min(h, w) <= max(BLUR_KERNELS) // 2:
        raise ConfigError(
            f"pretext 'blur' needs images larger than {max(BLUR_KERNELS) // 2} px; got {h}x{w}."
        )
    if labels is not None:
        if labels.shape != (x.shape[0],) or labels.dtype != torch.long:
            raise ConfigError(
                f"pretext labels must be long [{x.shape[0]}]; got {labels.dtype} {tuple(labels.shape)}."
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= spec.n_labels):
            raise ConfigError(f"pretext {task!r} labels must lie in 0..{spec.n_labels - 1}.")
    return spec


def transform(x: Tensor, task: str, labels: Tensor) -> Tensor:
    """Images ``x`` [B, 3, H, W] under ``task`` with per-image ``labels`` [B] (long, any device)."""
    spec = _check(x, task, labels)
    return spec.apply(x, labels.to(x.device))


def untransform(x: Tensor, task: str, labels: Tensor) -> Tensor:
    """Undo :func:`transform` exactly; ConfigError for the lossy tasks (grayscale, blur)."""
    spec = _check(x, task, labels)
    if spec.inverse is None:
        raise ConfigError(f"pretext {task!r} is lossy and has no inverse.")
    return spec.inverse(x, labels.to(x.device))


# The recipe fields that apply a task's transformation (or part of it) to a base view at random, before the task's
# label is applied: a head cannot learn a label that the base view has already scrambled (docs/methods.md §4.4).
# Setting them to "never" keeps the rest of the recipe. vflip and jigsaw have no counterpart in any recipe.
TASK_RECIPE_FIELDS: dict[str, dict[str, object]] = {
    "hflip": {"flip_p": 0.0},
    "grayscale": {"gray_p": 0.0},
    # solarize inverts the pixels above its threshold: a partial colour inversion
    "invert": {"solarize_p": 0.0},
    "blur": {"blur_p": 0.0},
    # CAug draws angles in [-90°, 90°], quarter turns among them
    "rotation": {"rotations": ()},
}


def without_task(recipe: Recipe, task: str) -> Recipe:
    """``recipe`` with the recipe fields that apply ``task`` (or part of it) switched off (:data:`TASK_RECIPE_FIELDS`):
    exact for hflip and grayscale; a recipe's milder look-alikes (low saturation, the resize's softening) stay."""
    get_task(task)
    return dataclasses.replace(recipe, **TASK_RECIPE_FIELDS.get(task, {}))


# The view each kind of head is trained on before its label: the light recipe (a task alone, ``pretext``) and
# SimCLR's (E-SSL's head; the shapes recipe mirrors and grays alike).
BASE_RECIPES: dict[str, Recipe] = {"pretext": light_recipe(32), "essl": get_recipe("simclr")}


def hidden_by_base(kind: str, task: str) -> bool:
    """Whether the base recipe of ``kind`` ("pretext": the task alone; "essl": E-SSL's head) applies ``task`` at
    random before its label, so that arm's label is partly or wholly hidden (docs/methods.md §4.4)."""
    recipe = BASE_RECIPES[kind]
    return without_task(recipe, task) != recipe


def sample_labels(n: int, task: str, generator: torch.Generator | None = None) -> Tensor:
    """``n`` uniform labels of ``task`` (long, on the generator's device, CPU by default)."""
    spec = get_task(task)
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(spec.n_labels, (n,), generator=generator, device=device)


def expand(x: Tensor, task: str) -> Expanded:
    """Every image under every label: block j of ``images`` is ``x`` under label j (like ``rotate4``)."""
    spec = _check(x, task)
    labels = torch.arange(spec.n_labels, device=x.device).repeat_interleave(len(x))
    return Expanded(images=spec.apply(x.repeat(spec.n_labels, 1, 1, 1), labels), labels=labels)
