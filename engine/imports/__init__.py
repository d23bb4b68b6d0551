"""Bring your own model: import checkpoints of other libraries as EquiLab checkpoints (evaluation only).

``model`` (the :class:`ImportedModel` an imported checkpoint rebuilds into), ``layers`` (heads inferred from
state-dict keys), ``backbones`` (torchvision / timm feature extractors), ``source`` (pickle-free reading),
``formats/`` (one file per source layout) and ``registry`` (``FORMATS``), ``convert`` (the ``import`` command).
Kept free of imports so ``engine.train.checkpoint`` can load ``engine.imports.model`` without a cycle.
"""
