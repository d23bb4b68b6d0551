"""The lab's view of a pretext head (E-SSL's rotation head, the ``rotation`` reference, a ``pretext`` model): the
head's class probabilities for one view and, for rotation, the label the view's angle corresponds to.

The task is the model's ``pretext_task`` attribute, else ``rotation`` when its ``embed()`` has
``rotation_logits`` (checkpoints from before the other tasks). E-SSL's head was trained on small views
(``rot_size`` px): the view is resized to that side first (bilinear, antialiased), as in training.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.augment.pretext import PRETEXT_TASKS
from engine.methods.protocol import head_task, logits_key


class HeadPrediction(NamedTuple):
    """The head's prediction for one view: probabilities over the task's labels (they sum to 1)."""

    task: str  # a key of PRETEXT_TASKS
    labels: tuple[str, ...]  # the task's label names
    probs: np.ndarray  # float64 [k]
    input_size: int  # the side the head saw

    @property
    def argmax(self) -> int:
        return int(np.argmax(self.probs))


def rotation_label(degrees: float) -> tuple[int, bool]:
    """(label of the nearest multiple of 90° counter-clockwise (0..3, the ``rotation`` task's), exact): an angle
    off the multiples is mapped to the nearest one, ``exact`` False."""
    d = float(degrees) % 360.0
    k = int(np.floor(d / 90.0 + 0.5)) % 4
    off = min(abs(d - 90.0 * k), 360.0 - abs(d - 90.0 * k))
    return k, off < 1e-6


@torch.no_grad()
def head_prediction(model, view: Tensor | np.ndarray) -> HeadPrediction | None:
    """Softmax of the pretext head on one view (float [3, S, S] or [1, 3, S, S] in [0, 1], tensor or array);
    None without a head."""
    task = head_task(model)
    if task is None:
        return None
    x = torch.as_tensor(np.asarray(view) if not isinstance(view, Tensor) else view).float()
    x = x[None] if x.ndim == 3 else x
    size = int(getattr(model, "rot_size", x.shape[-1]))
    if size != x.shape[-1] or size != x.shape[-2]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        device = next(model.parameters()).device
        logits = model.embed(x.to(device))[logits_key(task)]
    finally:
        model.train(was_training)
    probs = torch.softmax(logits[0].double(), dim=0).cpu().numpy()
    return HeadPrediction(task, PRETEXT_TASKS[task].label_names, probs, size)
