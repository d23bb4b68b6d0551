"""CLeVER's robustness evaluation (docs/methods.md §3.5, §4.4): linear-probe accuracy on clean test images and
under test-time perturbations, per embedding space (for CLeVER: ``backbone`` = all of h, ``invariant_part`` = IR,
``equivariant_part`` = EF).

The probe is the evaluation's lbfgs logistic regression (C = 1) on standardised clean train features; it is
fitted once per space and scored on the same test images under each perturbation of :data:`PERTURBATIONS`
(SifanSong/CLeVER ``eval_linear.py``): colour jitter (0.4, 0.4, 0.4, 0.1, always applied, random order), a
rotation drawn uniformly from the whole degrees in [-90°, 90°] or [-180°, 180°] (zero fill, as
``engine.augment.ops.rotate``), and jitter followed by rotation (CLeVER's "Ori+CJ+R"). The perturbations are
drawn from a generator seeded with ``seed``, so a result is replayable. Rows:
``{"space", "metric": "robust_acc/<perturbation>", "value"}``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from engine.augment import AugParams, Recipe, apply, identity_params, sample_params
from engine.eval.context import EvalContext, protocol_row, sample_ids, sample_images
from engine.methods.protocol import LOGIT_KEYS
from engine.train.checkpoint import load_model

Row = dict
_JITTER = dict(jitter_p=1.0, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
_ROT90 = tuple(float(a) for a in range(-90, 91))
_ROT180 = tuple(float(a) for a in range(-180, 181))
# name -> the recipe of the perturbation (no crop, no flip, no grayscale: only what the name says)
PERTURBATIONS: dict[str, Recipe | None] = {
    "clean": None,
    "jitter": Recipe(gray_p=0.0, flip_p=0.0, **_JITTER),
    "rot90": Recipe(gray_p=0.0, flip_p=0.0, jitter_p=0.0, rotations=_ROT90),
    "rot180": Recipe(gray_p=0.0, flip_p=0.0, jitter_p=0.0, rotations=_ROT180),
    "jitter+rot90": Recipe(gray_p=0.0, flip_p=0.0, rotations=_ROT90, **_JITTER),
    "jitter+rot180": Recipe(gray_p=0.0, flip_p=0.0, rotations=_ROT180, **_JITTER),
}
# name -> what a chart or table calls it (the rotation is an angle drawn within the range, not a fixed turn)
PERTURBATION_LABELS = {
    "clean": "clean",
    "jitter": "colour jitter",
    "rot90": "rotation ±90°",
    "rot180": "rotation ±180°",
    "jitter+rot90": "jitter + rotation ±90°",
    "jitter+rot180": "jitter + rotation ±180°",
}
BATCH = 256


def perturbation_params(name: str, n: int, hw: tuple[int, int], size: int, g: torch.Generator) -> AugParams:
    """Parameters of perturbation ``name`` for ``n`` whole images of ``hw`` resized to ``size`` (no crop)."""
    ident = identity_params(n, hw, size, g.device)
    recipe = PERTURBATIONS[name]
    if recipe is None:
        return ident
    p = sample_params(dataclasses.replace(recipe, size=size), n, hw, g)
    return dataclasses.replace(p, crop=ident.crop, flip=ident.flip, gray=ident.gray, blur=ident.blur)


@torch.no_grad()
def embed_perturbed(model, images: torch.Tensor, name: str, seed: int, device: str = "cpu") -> dict:
    """``{space: float32 numpy [N, D]}`` of uint8 ``images`` [N, 3, H, W] under perturbation ``name``."""
    g = torch.Generator(device=device).manual_seed(seed)
    hw, size = tuple(images.shape[-2:]), int(getattr(model, "image_size", images.shape[-1]))
    parts: dict[str, list[np.ndarray]] = {}
    for s in range(0, len(images), BATCH):
        b = images[s : s + BATCH].to(device)
        out = model.embed(apply(b, perturbation_params(name, len(b), hw, size, g)))
        for k, v in out.items():
            if k not in LOGIT_KEYS:
                parts.setdefault(k, []).append(v.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def fit_probe(x: np.ndarray, y: np.ndarray):
    """``predict(features) -> labels``: logistic regression (lbfgs, C = 1) on features standardised by ``x``."""
    x = np.asarray(x, np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-8
    clf = LogisticRegression(C=1.0, max_iter=500).fit((x - mean) / std, np.asarray(y))
    return lambda f: clf.predict((np.asarray(f, np.float64) - mean) / std)


def robustness_rows(
    model,
    train_features: dict[str, np.ndarray],
    train_labels: np.ndarray,
    test_images: torch.Tensor,
    test_labels: np.ndarray,
    seed: int = 0,
    device: str = "cpu",
) -> list[Row]:
    """Probe accuracy per space (those of ``train_features``) on ``test_images`` under every perturbation."""
    if hasattr(model, "eval"):
        model.eval()
    probes = {s: fit_probe(f, train_labels) for s, f in train_features.items()}
    y = np.asarray(test_labels)
    rows = []
    for i, name in enumerate(PERTURBATIONS):
        feats = embed_perturbed(model, test_images, name, seed * 1000 + i, device)
        for s, predict in probes.items():
            acc = float((predict(feats[s]) == y).mean()) if len(y) else float("nan")
            rows.append({"space": s, "metric": f"robust_acc/{name}", "value": acc})
    return rows


def eval_robustness(ctx: EvalContext) -> list[Row]:
    """The evaluator: probes on the train store's clean embeddings (``probe_cap`` items), ``n_eval`` test images
    perturbed and embedded by the store's checkpoint."""
    model, _ = load_model(ctx.test.checkpoint, ctx.device)
    ids = sample_ids(ctx.train.n, ctx.probe_cap, ctx.seed)
    spaces = [s for s in ctx.test.spaces if s not in LOGIT_KEYS]
    train = {s: np.asarray(ctx.train.embeddings(s))[ids] for s in spaces}
    imgs, test_ids = sample_images(ctx.test, ctx.n_eval, ctx.seed)
    what = (
        f"lbfgs probe on clean features of {len(ids)} train items; {len(imgs)} test images under "
        + ", ".join(PERTURBATIONS)
        + " (jitter 0.4/0.4/0.4/0.1; rotation uniform on whole degrees, zero fill)"
    )
    rows = robustness_rows(
        model, train, np.asarray(ctx.train.labels)[ids], imgs, np.asarray(ctx.test.labels)[test_ids],
        ctx.seed, ctx.device,
    )  # fmt: skip
    return [protocol_row("robustness", what), *rows]
