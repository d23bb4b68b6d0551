"""SSL methods registry: one ``nn.Module`` per method, built from a backbone name and a frozen config.

Every method class has ``Config`` (frozen dataclass of its hyper-parameters, paper defaults, including
``lr_scale``: the recommended multiplier on the base learning rate), ``trainable`` (False for ``none``) and
``spaces``; a built method satisfies :class:`engine.methods.protocol.Method` (``make_views``,
``forward(views) -> {"loss", "loss/<part>", diagnostics}``, ``embed(x01) -> {space: Tensor}``, ``build_kwargs``:
everything ``build_method`` needs to rebuild it, for checkpoints). See docs/methods.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from engine.core.errors import ConfigError
from engine.core.values import check_range
from engine.methods.clever import CLeVER
from engine.methods.equimod import EquiMod
from engine.methods.essl import ESSL
from engine.methods.losses import Gather, local
from engine.methods.options import make_config
from engine.methods.pretext import Pretext
from engine.methods.protocol import LOGIT_KEYS, Method, Predicts, logits_key
from engine.methods.rotation import NoTraining, Rotation
from engine.methods.simclr import SimCLR
from engine.models import BACKBONES

METHODS: dict[str, type[nn.Module]] = {
    "simclr": SimCLR,
    "essl": ESSL,
    "equimod": EquiMod,
    "clever": CLeVER,
    "rotation": Rotation,
    "pretext": Pretext,
    "none": NoTraining,
}

# Embedding spaces each method's embed() returns at its default options (for stores, the app and tests); a built
# model's own ``spaces`` is authoritative (``pretext``/``essl`` with another task return "pretext_logits").
SPACES: dict[str, tuple[str, ...]] = {name: cls.spaces for name, cls in METHODS.items()}


def method_class(name: str) -> type[nn.Module]:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name]


def method_config(name: str, options: dict[str, Any] | None = None) -> Any:
    """The method's frozen ``Config`` with ``options`` applied; ConfigError for unknown names, keys or values."""
    return make_config(method_class(name).Config, name, options)


def build_method(
    name: str,
    backbone: str = "resnet18_cifar",
    width: float = 1.0,
    image_size: int = 32,
    options: dict[str, Any] | None = None,
    gather: Gather = local,
) -> nn.Module:
    """Build method ``name`` on a fresh ``backbone`` of channel ``width`` for ``image_size`` px views.

    ``gather`` is how its contrastive losses see the other DDP ranks (``engine.core.distributed.gather_rows``
    from the trainer; :func:`~engine.methods.losses.local` otherwise); a config with ``gather: false`` keeps
    its negatives local either way."""
    cls = method_class(name)
    config = method_config(name, options)
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {backbone!r}; choose from {sorted(BACKBONES)}")
    width = check_range("model.width", width, where="backbone width")
    if not (isinstance(image_size, int) and 8 <= image_size <= 1024):
        raise ConfigError(f"image_size {image_size!r} out of range; allowed integers in [8, 1024]")
    model = cls(BACKBONES[backbone](width=float(width)), config, image_size)
    model.name = name
    if getattr(config, "gather", False):
        model.gather = gather
    model.build_kwargs = {
        "name": name,
        "backbone": backbone,
        "width": float(width),
        "image_size": image_size,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()},
    }
    return model


__all__ = [
    "LOGIT_KEYS",
    "METHODS",
    "SPACES",
    "Method",
    "Predicts",
    "build_method",
    "logits_key",
    "method_class",
    "method_config",
]
