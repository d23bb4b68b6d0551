"""Pretext ceilings on shapes against Monte Carlo: pose simulations with 2x2 matrices, and rendered images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.augment.pretext import PRETEXT_TASKS, expand, transform
from engine.core.errors import ConfigError
from engine.data.ceilings import ceilings, mirror_symmetric, pretext_ceiling
from engine.data.shapes import CLASSES, ORIENTATIONS, SYMMETRY, generate, render_batch, rotation_ceiling

CHIRAL = {"L"}  # the only shape without a mirror axis (its arms differ in length)
HFLIP, VFLIP = np.diag([-1.0, 1.0]), np.diag([1.0, -1.0])


def _rot(deg: np.ndarray) -> np.ndarray:
    r = np.deg2rad(deg)
    c, s = np.cos(r), np.sin(r)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # [..., 2, 2]


LABEL_MATRICES = {
    "rotation": [_rot(np.array(90.0 * k)) for k in range(4)],
    "hflip": [np.eye(2), HFLIP],
    "vflip": [np.eye(2), VFLIP],
}


def _monte_carlo_pose(task: str, orientation: str, n: int = 100_000, seed: int = 0) -> float:
    """Bayes accuracy from simulated poses: label matrix times R(theta), reduced by the shape's symmetries,
    the observed pose binned in half degrees (x chirality)."""
    rng = np.random.default_rng(seed)
    lo, hi = ORIENTATIONS[orientation]
    mats = np.stack(LABEL_MATRICES[task])
    accs = []
    for name in CLASSES:
        theta, k = rng.uniform(lo, hi, n), rng.integers(0, len(mats), n)
        pose = mats[k] @ _rot(theta)  # [n, 2, 2]
        chi = np.rint(np.linalg.det(pose)).astype(int)
        if name not in CHIRAL:  # S = H S: a mirrored pose shows the same image as pose @ H
            pose = np.where((chi < 0)[:, None, None], pose @ HFLIP, pose)
            chi = np.ones_like(chi)
        angle = np.rad2deg(np.arctan2(pose[:, 1, 0], pose[:, 0, 0]))
        order = SYMMETRY[name]
        angle = np.mod(angle, 360.0 / order) if order else np.zeros_like(angle)
        cell = (np.floor(angle / 0.5).astype(int) * 2 + (chi > 0)).astype(int)  # half-degree bins x chirality
        # the best label per cell, chosen on one half and scored on the other (a max over noisy counts of the
        # same samples would be biased upwards where labels tie)
        fit, score = slice(0, n // 2), slice(n // 2, n)
        counts = np.zeros((cell.max() + 1, len(mats)))
        np.add.at(counts, (cell[fit], k[fit]), 1)
        accs.append(float(np.mean(counts.argmax(axis=1)[cell[score]] == k[score])))
    return float(np.mean(accs))


def test_mirror_axes_of_the_shapes():
    assert {name for name in CLASSES if not mirror_symmetric(name)} == CHIRAL


@pytest.mark.parametrize("orientation", ["uniform", "upright"])
@pytest.mark.parametrize("task", ["rotation", "hflip", "vflip"])
def test_geometric_ceilings_match_a_monte_carlo_over_poses(task, orientation):
    assert pretext_ceiling(task, orientation) == pytest.approx(_monte_carlo_pose(task, orientation), abs=0.01)


def test_known_values():
    for orientation in ORIENTATIONS:  # rotation is the existing rotation_ceiling
        assert pretext_ceiling("rotation", orientation) == pytest.approx(
            rotation_ceiling(orientation), abs=1e-9
        )
    # flips: only L (chiral) reveals a mirror on uniform angles; upright, a vflip also shows on shapes whose
    # symmetry order is odd (triangle 1.0, star 0.9, semicircle/arrow/T 1.0)
    assert pretext_ceiling("hflip", "uniform") == pytest.approx(0.55, abs=1e-3)
    assert pretext_ceiling("hflip", "upright") == pytest.approx(0.55, abs=1e-3)
    assert pretext_ceiling("vflip", "uniform") == pytest.approx(0.55, abs=1e-3)
    assert pretext_ceiling("vflip", "upright") == pytest.approx(0.79, abs=1e-3)
    for task in ("invert", "grayscale", "blur"):
        assert pretext_ceiling(task, "uniform") == pretext_ceiling(task, "upright") == 1.0
    assert set(ceilings("upright")) == set(PRETEXT_TASKS)
    for name, value in ceilings("uniform").items():
        assert 1 / PRETEXT_TASKS[name].n_labels - 1e-9 <= value <= 1.0


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="unknown pretext"):
        pretext_ceiling("mirror")
    with pytest.raises(ConfigError, match="orientation"):
        pretext_ceiling("hflip", "sideways")


def _images(orientation: str, n: int, seed: int = 0):
    arrays = generate(n, seed, "test", orientation)
    return torch.from_numpy(arrays.images).permute(0, 3, 1, 2).contiguous(), arrays


@pytest.mark.parametrize("orientation", ["uniform", "upright"])
def test_jigsaw_ceiling_matches_the_stabiliser_of_rendered_images(orientation):
    """Bayes accuracy = E[1 / #labels that leave the image unchanged], counted on real pixels."""
    x, _ = _images(orientation, 1000)
    images, _ = expand(x, "jigsaw")  # [24 B, ...]: block j = every image under label j
    same = (images.reshape(24, *x.shape) == x[None]).flatten(2).all(dim=2)  # [24, B]
    mc = (1.0 / same.sum(dim=0).double()).mean().item()
    assert pretext_ceiling("jigsaw", orientation) == pytest.approx(mc, abs=0.01)
    assert mc < 1.0  # some shapes leave quadrants empty


def test_pose_equivalences_hold_on_pixels():
    """What the geometric ceilings assume: a flip or turn of a rendered image renders the flipped pose."""
    _, arrays = _images("uniform", 200, seed=3)
    labels, f = arrays.labels, {k: arrays.meta[k].copy() for k in ("hue", "saturation", "value", "scale")}
    f |= {k: arrays.meta[k] for k in ("bg_hue", "bg_value")}
    x, y, angle = arrays.meta["x"], arrays.meta["y"], arrays.meta["angle"]
    symmetric = np.array([CLASSES[c] not in CHIRAL for c in labels])
    src = torch.from_numpy(arrays.images).permute(0, 3, 1, 2)
    cases = {
        "hflip": (f | {"x": 32 - x, "y": y, "angle": -angle}, symmetric),
        "vflip": (f | {"x": x, "y": 32 - y, "angle": 180 - angle}, symmetric),
        "rotation": (f | {"x": y, "y": 32 - x, "angle": angle + 90}, np.ones_like(symmetric)),
    }
    for task, (factors, keep) in cases.items():
        ours = transform(src, task, torch.ones(len(src), dtype=torch.long)).permute(0, 2, 3, 1).int()
        ref = torch.from_numpy(render_batch(labels, factors)).int()
        diff = (ours - ref).abs()[torch.from_numpy(keep)]
        assert diff.float().mean() < 0.05 and (diff > 2).float().mean() < 1e-3, task  # float ties at edges
    chiral = ~symmetric  # and an L never looks like its own mirror image
    ours = transform(src[chiral], "hflip", torch.ones(int(chiral.sum()), dtype=torch.long)).permute(
        0, 2, 3, 1
    )
    ref = torch.from_numpy(render_batch(labels[chiral], {k: v[chiral] for k, v in cases["hflip"][0].items()}))
    assert ((ours.int() - ref.int()).abs() > 30).flatten(1).any(dim=1).all()


@pytest.mark.parametrize("orientation", ["uniform", "upright"])
def test_invert_and_grayscale_are_read_off_by_a_fixed_rule(orientation):
    x, _ = _images(orientation, 400)
    lab = torch.arange(len(x)) % 2
    inv = transform(x, "invert", lab)
    border = torch.cat([inv[..., 0, :], inv[..., -1, :], inv[..., :, 0], inv[..., :, -1]], dim=-1)
    guess = (border.amax(dim=1).float().median(dim=1).values > 127).long()
    assert torch.equal(guess, lab)
    gray = transform(x, "grayscale", lab)
    chroma = (gray.amax(dim=1).int() - gray.amin(dim=1).int()).flatten(1).amax(dim=1)
    assert torch.equal((chroma == 0).long(), lab)


def test_blur_level_is_read_off_by_a_linear_probe_on_the_spectrum():
    """A lower bound on the blur ceiling: a linear classifier on log band powers, scored on held-out images."""
    x, _ = _images("upright", 400)
    images, labels = expand(x, "blur")
    lum = images.float().mean(dim=1)
    power = torch.fft.rfft2(lum - lum.mean(dim=(1, 2), keepdim=True)).abs().square()
    radius = (torch.fft.fftfreq(32)[:, None] ** 2 + torch.fft.rfftfreq(32)[None, :] ** 2).sqrt()
    bands = torch.stack(
        [power[:, (radius >= lo) & (radius < lo + 0.05)].sum(1) for lo in np.arange(0, 0.5, 0.05)], 1
    )
    feats = torch.log(bands + 1e-3) - torch.log(bands.sum(dim=1, keepdim=True))
    train = torch.arange(len(labels)) % len(x) < len(x) // 2  # the same images never in both halves
    feats = (feats - feats[train].mean(0)) / (feats[train].std(0) + 1e-6)
    w = torch.zeros(feats.shape[1], 4, requires_grad=True)
    b = torch.zeros(4, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(feats[train] @ w + b, labels[train]) + 1e-4 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    held_out = ((feats[~train] @ w + b).argmax(1) == labels[~train]).float().mean().item()
    assert held_out >= 0.99 and pretext_ceiling("blur") == 1.0
