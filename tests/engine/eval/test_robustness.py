"""The robustness evaluator on toy models with a known answer (engine.eval.robustness)."""

from __future__ import annotations

import numpy as np
import torch

from engine.eval.robustness import PERTURBATION_LABELS, PERTURBATIONS, embed_perturbed, robustness_rows

N, S = 120, 32


class Toy:
    """``embed`` = a fixed function of the image, no parameters."""

    image_size = S

    def __init__(self, fn):
        self.fn = fn

    def embed(self, x01):
        return {"backbone": self.fn(x01), "rotation_logits": torch.zeros(len(x01), 4)}


def _disks(labels: np.ndarray) -> torch.Tensor:
    """A centred grey disk of radius 8 on black: intensity 0.3 (class 0) or 0.8 (class 1)."""
    yy, xx = torch.meshgrid(torch.arange(S) - S / 2 + 0.5, torch.arange(S) - S / 2 + 0.5, indexing="ij")
    disk = ((yy**2 + xx**2) <= 64).float()
    v = torch.tensor(np.where(labels == 1, 0.8, 0.3), dtype=torch.float32)
    return (v[:, None, None, None] * disk * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


def _dots(labels: np.ndarray) -> torch.Tensor:
    """A white pixel at (4, 16) for class 1; a black image for class 0."""
    x = torch.zeros(len(labels), 3, S, S, dtype=torch.uint8)
    x[torch.as_tensor(labels == 1), :, 4, 16] = 255
    return x


def _rows(model, make):
    rng = np.random.default_rng(0)
    ytr, yte = rng.integers(0, 2, N), rng.integers(0, 2, N)
    train = embed_perturbed(model, make(ytr), "clean", 0)
    rows = robustness_rows(model, {"backbone": train["backbone"]}, ytr, make(yte), yte, seed=3)
    return {r["metric"].split("/", 1)[1]: r["value"] for r in rows}


def test_a_rotation_invariant_model_keeps_its_accuracy_under_rotation():
    # the mean of the centre disk: invariant to rotation (the disk stays inside the frame), not to jitter
    acc = _rows(Toy(lambda x: x[:, :, 8:24, 8:24].mean(dim=(1, 2, 3))[:, None]), _disks)
    assert set(acc) == set(PERTURBATIONS)
    assert acc["clean"] == acc["rot90"] == acc["rot180"] == 1.0


def test_a_model_reading_a_moved_pixel_drops_to_chance():
    acc = _rows(Toy(lambda x: x[:, :, 4, 16].mean(dim=1, keepdim=True)), _dots)
    assert acc["clean"] == 1.0 and acc["jitter"] >= 0.9  # jitter keeps a white dot on black
    for name in ("rot90", "rot180", "jitter+rot90", "jitter+rot180"):
        assert acc[name] < 0.7, (name, acc[name])  # chance 0.5; a few small angles keep the dot in place


def test_results_are_seeded():
    model = Toy(lambda x: x.mean(dim=(2, 3)))
    imgs = _disks(np.array([0, 1] * 8))
    a = embed_perturbed(model, imgs, "jitter+rot90", 7)["backbone"]
    b = embed_perturbed(model, imgs, "jitter+rot90", 7)["backbone"]
    c = embed_perturbed(model, imgs, "jitter+rot90", 8)["backbone"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert "rotation_logits" not in embed_perturbed(model, imgs, "clean", 0)  # logits are not a space


def test_every_perturbation_has_a_label_that_names_its_range():
    assert list(PERTURBATION_LABELS) == list(PERTURBATIONS)
    for name, recipe in PERTURBATIONS.items():
        if recipe is not None and len(recipe.rotations) > 1:  # an angle drawn within ±max, said as such
            assert f"±{max(recipe.rotations):.0f}°" in PERTURBATION_LABELS[name], name
