"""The seven pretext transformations: inverses, identities, distinct labels, torchvision/PIL references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from engine.augment.pretext import (
    BLUR_KERNELS,
    JIGSAW_PERMUTATIONS,
    PRETEXT_TASKS,
    TASK_RECIPE_FIELDS,
    blur_sigma,
    expand,
    sample_labels,
    transform,
    untransform,
    without_task,
)
from engine.augment.recipes import RECIPES, Recipe, get_recipe, light_recipe
from engine.augment.rotation import rotate4
from engine.core.errors import ConfigError

INVERTIBLE = [name for name, task in PRETEXT_TASKS.items() if task.inverse is not None]
LOSSY = [name for name, task in PRETEXT_TASKS.items() if task.inverse is None]


def _float(n=6, hw=(32, 32), seed=0):
    return torch.rand(n, 3, *hw, generator=torch.Generator().manual_seed(seed))


def _uint8(n=6, hw=(32, 32), seed=0):
    return torch.randint(
        0, 256, (n, 3, *hw), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def _all_labels(task: str, n_images: int) -> torch.Tensor:
    return torch.arange(n_images) % PRETEXT_TASKS[task].n_labels


def test_registry_holds_the_papers_seven_tasks_and_label_spaces():
    sizes = {name: task.n_labels for name, task in PRETEXT_TASKS.items()}
    assert sizes == {
        "hflip": 2,
        "vflip": 2,
        "invert": 2,
        "grayscale": 2,
        "rotation": 4,
        "blur": 4,
        "jigsaw": 24,
    }
    assert sorted(LOSSY) == ["blur", "grayscale"]
    for task in PRETEXT_TASKS.values():
        assert len(task.label_names) == task.n_labels == len(set(task.label_names))


@pytest.mark.parametrize("task", INVERTIBLE)
@pytest.mark.parametrize("make", [_float, _uint8])
def test_label_then_inverse_recovers_the_input_exactly(task, make):
    x = make(n=48)
    labels = _all_labels(task, len(x))[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))]
    y = transform(x, task, labels)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert torch.equal(untransform(y, task, labels), x)
    assert torch.equal(transform(x, task, labels), y)  # replayable: same labels, same pixels


@pytest.mark.parametrize("task", list(PRETEXT_TASKS))
@pytest.mark.parametrize("make", [_float, _uint8])
def test_label_zero_is_identity_and_labels_give_distinct_images(task, make):
    x = make(n=3)
    images, labels = expand(x, task)
    k = PRETEXT_TASKS[task].n_labels
    assert images.shape == (k * 3, *x.shape[1:]) and images.dtype == x.dtype
    assert torch.equal(labels, torch.arange(k).repeat_interleave(3))
    blocks = images.reshape(k, *x.shape).float()
    assert torch.equal(blocks[0], x.float())
    for a, b in itertools.combinations(range(k), 2):  # a generic image looks different under every label
        assert (blocks[a] - blocks[b]).abs().amax(dim=(1, 2, 3)).min() > 0


def test_lossy_tasks_have_no_inverse():
    for task in LOSSY:
        with pytest.raises(ConfigError, match="lossy"):
            untransform(_float(2), task, torch.zeros(2, dtype=torch.long))


def test_rotation_expand_is_rotate4():
    x = _float(5)
    ours, theirs = expand(x, "rotation"), rotate4(x)
    assert torch.equal(ours.images, theirs.images) and torch.equal(ours.labels, theirs.labels)


def test_flips_invert_and_rotation_match_torchvision():
    for x in (_float(4), _uint8(4)):
        one = torch.ones(len(x), dtype=torch.long)
        assert torch.equal(transform(x, "hflip", one), TF.horizontal_flip(x))
        assert torch.equal(transform(x, "vflip", one), TF.vertical_flip(x))
        assert torch.equal(transform(x, "invert", one), TF.invert(x))
        for k in range(4):  # torchvision rotates counter-clockwise for positive angles, as rot90
            ref = TF.rotate(x, 90.0 * k)
            assert torch.equal(transform(x, "rotation", torch.full((len(x),), k)), ref)


def test_grayscale_matches_torchvision_and_pil():
    x = _float(4)
    ours = transform(x, "grayscale", torch.ones(4, dtype=torch.long))
    assert torch.allclose(ours, TF.rgb_to_grayscale(x, num_output_channels=3), atol=1e-7, rtol=0)
    u = _uint8(4)
    ours = transform(u, "grayscale", torch.ones(4, dtype=torch.long))
    assert torch.equal(ours[:, 0], ours[:, 1]) and torch.equal(ours[:, 0], ours[:, 2])
    for img, gray in zip(u, ours):  # PIL's "L" (the authors' RandomGrayscale): 299/587/114, rounded
        pil = np.asarray(Image.fromarray(img.permute(1, 2, 0).numpy()).convert("L"), dtype=np.int64)
        assert np.abs(gray[0].numpy().astype(np.int64) - pil).max() <= 1


def test_blur_matches_torchvision_with_the_fixed_sigmas():
    assert [round(blur_sigma(k), 6) for k in BLUR_KERNELS] == [1.1, 1.7, 2.6]
    for x in (_float(3), _uint8(3)):
        for label, k in enumerate(BLUR_KERNELS, start=1):
            ours = transform(x, "blur", torch.full((len(x),), label))
            ref = TF.gaussian_blur(x, [k, k], [blur_sigma(k)] * 2)
            if x.is_floating_point():
                assert (ours - ref).abs().max() <= 1e-6
            else:  # float sums in a different order may round a .5 the other way
                assert (ours.int() - ref.int()).abs().max() <= 1
            assert torch.equal(ref, TF.gaussian_blur(x, [k, k]))  # torchvision's own default sigma for side k


def test_jigsaw_table_is_a_bijection_over_24_labels():
    perms = JIGSAW_PERMUTATIONS
    assert len(perms) == len(set(perms)) == 24 and perms[0] == (0, 1, 2, 3) and perms[-1] == (3, 2, 1, 0)
    assert set(perms) == set(itertools.permutations(range(4)))
    assert list(perms) == sorted(perms)  # lexicographic: the authors' jigsaw_dict order
    # an image whose patch q is filled with the value q: label k shows patch perms[k][p] at position p
    quads = torch.zeros(1, 3, 32, 32)
    for q in range(4):
        quads[..., q // 2 * 16 : q // 2 * 16 + 16, q % 2 * 16 : q % 2 * 16 + 16] = q
    images, labels = expand(quads, "jigsaw")
    shown = [tuple(images[i, 0, ::16, ::16].flatten().int().tolist()) for i in range(24)]
    assert shown == list(perms)
    assert torch.equal(untransform(images, "jigsaw", labels), quads.expand(24, -1, -1, -1))


def test_jigsaw_matches_the_authors_crop_and_concatenate():
    x = _float(24, hw=(32, 32))
    labels = torch.arange(24)
    ours = transform(x, "jigsaw", labels)
    for img, out, k in zip(x, ours, labels.tolist()):
        crops = [img[:, i * 16 : (i + 1) * 16, j * 16 : (j + 1) * 16] for i in range(2) for j in range(2)]
        s = [crops[i] for i in JIGSAW_PERMUTATIONS[k]]
        ref = torch.cat([torch.cat([s[0], s[1]], dim=2), torch.cat([s[2], s[3]], dim=2)], dim=1)
        assert torch.equal(out, ref)


def test_non_square_and_odd_sizes():
    x = _float(2, hw=(20, 32))
    lab = torch.tensor([0, 1])
    assert transform(x, "hflip", lab).shape == x.shape
    assert torch.equal(untransform(transform(x, "jigsaw", lab), "jigsaw", lab), x)
    with pytest.raises(ConfigError, match="square"):
        transform(x, "rotation", lab)
    with pytest.raises(ConfigError, match="even"):
        transform(_float(2, hw=(21, 32)), "jigsaw", lab)


def test_bad_labels_and_names_are_one_line_errors():
    x = _float(2)
    with pytest.raises(ConfigError, match=r"0\.\.3"):
        transform(x, "rotation", torch.tensor([0, 4]))
    with pytest.raises(ConfigError, match="long"):
        transform(x, "rotation", torch.tensor([0.0, 1.0]))
    with pytest.raises(ConfigError, match="unknown pretext"):
        transform(x, "colour", torch.tensor([0, 1]))


def test_sample_labels_is_seeded_and_in_range():
    a = sample_labels(500, "jigsaw", torch.Generator().manual_seed(3))
    b = sample_labels(500, "jigsaw", torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.long and int(a.min()) >= 0 and int(a.max()) == 23


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = _uint8(8)
    for task, spec in PRETEXT_TASKS.items():
        labels = _all_labels(task, len(x))
        cpu = transform(x, task, labels)
        gpu = transform(x.cuda(), task, labels.cuda()).cpu()
        assert (cpu.int() - gpu.int()).abs().max() <= (1 if task == "blur" else 0), task
        if spec.inverse is not None:
            assert torch.equal(untransform(gpu.cuda(), task, labels).cpu(), x)


def test_without_task_switches_off_only_the_recipe_fields_that_apply_the_task():
    simclr, caug = get_recipe("simclr"), get_recipe("simclr_caug")
    assert without_task(simclr, "hflip") == Recipe(flip_p=0.0)
    assert (
        without_task(simclr, "grayscale").gray_p == 0.0 and without_task(simclr, "grayscale").jitter_p == 0.8
    )
    assert without_task(get_recipe("byol"), "blur").blur_p == 0.0
    assert without_task(get_recipe("byol_view2"), "invert").solarize_p == 0.0
    assert without_task(caug, "rotation").rotations == () and caug.rotations
    # tasks no recipe applies at random leave every recipe as it is
    for name, recipe in RECIPES.items():
        for task in ("vflip", "jigsaw"):
            assert without_task(recipe, task) == recipe, name
    assert without_task(light_recipe(16), "hflip").size == 16
    assert set(TASK_RECIPE_FIELDS) <= set(PRETEXT_TASKS)
    with pytest.raises(ConfigError, match="shear"):
        without_task(simclr, "shear")
