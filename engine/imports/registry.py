"""``FORMATS``: format name -> its module (``plan(content, request) -> (Plan, state)``, ``DESCRIPTION``)."""

from __future__ import annotations

from types import ModuleType

from engine.imports.formats import equimod, essl, lightly, plain, solo_learn, timm, torchvision

FORMATS: dict[str, ModuleType] = {
    "torchvision": torchvision,
    "timm": timm,
    "safetensors": plain,
    "solo-learn": solo_learn,
    "lightly": lightly,
    "essl": essl,
    "equimod": equimod,
}
