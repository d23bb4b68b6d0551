"""The lab's pretext-head prediction: probabilities, label names, the angle -> rotation label mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engine.augment.ops import rotate
from engine.augment.pretext import PRETEXT_TASKS, expand, transform
from engine.lab.pretext import head_prediction, head_task, rotation_label
from engine.methods.protocol import logits_key
from engine.train.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[3]


class Matcher(nn.Module):
    """A head that knows one image: logits = -distance of the input to that image under each label of ``task``."""

    def __init__(self, ref: torch.Tensor, task: str) -> None:
        super().__init__()
        self.pretext_task = task
        self.spaces = ("backbone", logits_key(task))
        self.bank = nn.Parameter(expand(ref, task).images.flatten(1), requires_grad=False)

    def embed(self, x01: torch.Tensor) -> dict[str, torch.Tensor]:
        d = torch.cdist(x01.flatten(1), self.bank)
        return {"backbone": x01.flatten(1), logits_key(self.pretext_task): -50.0 * d}


@pytest.mark.parametrize("task", ["rotation", "hflip", "jigsaw"])
def test_a_transformed_view_is_recognised_with_the_task_label_names(task):
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, 16, 16, generator=g)
    model = Matcher(ref, task)
    k = PRETEXT_TASKS[task].n_labels - 1
    view = transform(ref, task, torch.tensor([k]))[0]
    pred = head_prediction(model, view)
    assert pred is not None and pred.task == task
    assert pred.labels == PRETEXT_TASKS[task].label_names
    assert pred.probs.shape == (PRETEXT_TASKS[task].n_labels,)
    assert pred.probs.sum() == pytest.approx(1.0, abs=1e-9)
    assert pred.argmax == k


def test_a_view_rotated_90_degrees_by_the_lab_op_maps_to_label_1():
    ref = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model = Matcher(ref, "rotation")
    view = rotate(ref, torch.tensor([90.0]))  # the lab's arbitrary-angle rotation, counter-clockwise
    pred = head_prediction(model, view)
    assert rotation_label(90.0) == (1, True)
    assert pred.argmax == 1 and pred.labels[pred.argmax] == "90°"


@pytest.mark.parametrize(
    ("degrees", "want"),
    [(0, (0, True)), (90, (1, True)), (180, (2, True)), (270, (3, True)), (360, (0, True)), (-90, (3, True)),
     (44, (0, False)), (46, (1, False)), (200, (2, False)), (316, (0, False))],
)  # fmt: skip
def test_rotation_label_is_the_nearest_quarter_turn(degrees, want):
    assert rotation_label(degrees) == want


def test_shipped_essl_checkpoint_has_a_rotation_head_on_small_views():
    model, _ = load_model(ROOT / "checkpoints" / "shapes-essl.safetensors")
    assert head_task(model) == "rotation"
    view = transform(torch.rand(1, 3, 32, 32), "rotation", torch.tensor([1]))[0]
    pred = head_prediction(model, view)
    assert pred.input_size == model.rot_size
    assert np.isfinite(pred.probs).all() and pred.probs.sum() == pytest.approx(1.0, abs=1e-9)
    assert not model.training  # left as it was


def test_a_model_without_a_pretext_head_has_no_prediction():
    model, _ = load_model(ROOT / "checkpoints" / "shapes-simclr.safetensors")
    assert head_task(model) is None
    assert head_prediction(model, torch.rand(3, 32, 32)) is None
