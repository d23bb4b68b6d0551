"""The `pretext` reference (every Understanding-ESSL task), E-SSL's `transform` option, the explaining-away
class term, and the trainer's labels + online linear classifier."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from engine.augment import augment, get_recipe, light_recipe
from engine.augment.pretext import PRETEXT_TASKS, expand
from engine.core.errors import ConfigError
from engine.methods import LOGIT_KEYS, build_method, method_config
from engine.methods.pretext import confusion
from engine.train.config import load_config
from engine.train.loop import fit

WIDTH, B = 0.0625, 4


def _images(n=B, seed=0):
    return torch.randint(
        0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def _upright(n, seed):
    """Images with a bright top half and a dark bottom half (plus noise): their rotation is learnable."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 60, (n, 3, 32, 32), generator=g)
    x[:, :, :10] += 180
    return x.clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("task", sorted(PRETEXT_TASKS))
def test_every_task_trains_a_step_and_embeds_its_logits(task):
    k = PRETEXT_TASKS[task].n_labels
    copies = "sampled" if task == "jigsaw" else "all"
    m = build_method("pretext", width=WIDTH, options={"task": task, "copies": copies})
    v = m.make_views(_images(), torch.Generator().manual_seed(0))
    assert v["xr"].shape[0] == (B if copies == "sampled" else k * B)
    out = m(v)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and f"acc/{task}" in out
    emb = m.embed(torch.rand(2, 3, 32, 32))
    key = "rotation_logits" if task == "rotation" else "pretext_logits"
    assert tuple(emb) == m.spaces == ("backbone", key) and emb[key].shape == (2, k) and key in LOGIT_KEYS


@pytest.mark.parametrize("task", ["jigsaw", "blur", "hflip"])
def test_essl_transform_predicts_any_task(task):
    k = PRETEXT_TASKS[task].n_labels
    m = build_method("essl", width=WIDTH, options={"transform": task})
    v = m.make_views(_images(), torch.Generator().manual_seed(0))
    assert v["xr"].shape == (k * B, 3, 16, 16) and sorted(v["yr"].tolist()) == sorted(list(range(k)) * B)
    out = m(v)
    assert f"acc/{task}" in out and torch.isfinite(out["loss"])
    assert m.embed(torch.rand(2, 3, 32, 32))["pretext_logits"].shape == (2, k)


def test_unknown_task_and_class_term_are_config_errors():
    with pytest.raises(ConfigError, match="task"):
        method_config("pretext", {"task": "shear"})
    with pytest.raises(ConfigError, match="class_term"):
        method_config("pretext", {"class_term": "subtract"})
    with pytest.raises(ConfigError, match="transform"):
        method_config("essl", {"transform": "shear"})


def test_rotation_keeps_its_name_head_and_checkpoint_keys():
    rot = build_method("rotation", width=WIDTH)
    assert any(k.startswith("rotation_head.") for k in rot.state_dict())
    pre = build_method("pretext", width=WIDTH)
    pre.load_state_dict(
        {k.replace("rotation_head.", "pretext_head."): v for k, v in rot.state_dict().items()}
    )
    x = torch.rand(2, 3, 32, 32)
    rot.eval(), pre.eval()
    assert torch.equal(rot.embed(x)["rotation_logits"], pre.embed(x)["rotation_logits"])


def _grads(m, views):
    m.zero_grad()
    out = m(views)
    out["loss"].backward()
    return out, {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def test_class_terms_add_and_eliminate_have_the_right_gradients():
    torch.manual_seed(0)
    plain = build_method("pretext", width=WIDTH, options={"num_classes": 3}).eval()
    add = build_method("pretext", width=WIDTH, options={"class_term": "add", "num_classes": 3}).eval()
    eli = build_method("pretext", width=WIDTH, options={"class_term": "eliminate", "num_classes": 3}).eval()
    add.load_state_dict(
        {**plain.state_dict(), **{k: v for k, v in add.state_dict().items() if "classifier" in k}}
    )
    eli.load_state_dict(add.state_dict())
    v = plain.make_views(_images(), torch.Generator().manual_seed(1))
    v["y"] = torch.tensor([0, 1, 2, -1])  # -1: unlabelled, ignored
    _, g_plain = _grads(plain, v)
    out_add, g_add = _grads(add, v)
    out_eli, g_eli = _grads(eli, v)
    assert out_add["loss"].item() == pytest.approx(
        (out_add["loss/rotation"] + out_add["loss/class"]).item(), rel=1e-5
    )
    assert out_eli["loss"].item() == pytest.approx(out_eli["loss/rotation"].item(), rel=1e-5)  # +CE - CE
    w = "backbone.stem.0.weight"
    # backbone: eliminate's class gradient is the negative of add's; the classifier learns +CE in both
    d_add, d_eli = g_add[w] - g_plain[w], g_eli[w] - g_plain[w]
    assert torch.allclose(d_eli, -d_add, atol=1e-6) and d_add.abs().sum() > 0
    assert torch.allclose(g_add["classifier.weight"], g_eli["classifier.weight"], atol=1e-6)
    y = v["y"].repeat(4)
    h = add.backbone(v["xr"]).detach()
    ref = torch.autograd.grad(F.cross_entropy(add.classifier(h), y, ignore_index=-1), add.classifier.weight)[
        0
    ]
    assert torch.allclose(g_add["classifier.weight"], ref, atol=1e-6)
    with pytest.raises(ConfigError, match="labels"):
        add({k: t for k, t in v.items() if k != "y"})


def test_confuse_is_the_bounded_form_of_eliminate():

    rows = torch.tensor([True, True, False])
    uniform = torch.zeros(3, 4)
    assert confusion(uniform, rows).item() == pytest.approx(0.0, abs=1e-7)  # cannot tell the classes apart
    sharp = torch.tensor([[9.0, 0, 0, 0], [0, 9.0, 0, 0], [0, 0, 0, 0]])
    want = (-F.log_softmax(sharp[:2], 1).mean(1) - math.log(4)).mean()  # KL(uniform || p), hand-computed
    assert confusion(sharp, rows).item() == pytest.approx(want.item()) and want > 0
    for scale in (1.0, 1e2, 1e4):  # however far the logits go, the loss never goes below 0 (eliminate's does)
        z = torch.randn(8, 4) * scale
        assert confusion(z, torch.ones(8, dtype=torch.bool)).item() >= -1e-6
    torch.manual_seed(0)
    m = build_method("pretext", width=WIDTH, options={"class_term": "confuse", "num_classes": 3}).eval()
    v = m.make_views(_images(), torch.Generator().manual_seed(1))
    v["y"] = torch.tensor([0, 1, 2, -1])
    out, g = _grads(m, v)
    assert out["loss"].item() >= out["loss/rotation"].item() + out["loss/class"].item() - 1e-5
    assert g["classifier.weight"].abs().sum() > 0 and g["backbone.stem.0.weight"].abs().sum() > 0


def _trained(options: dict, images, steps: int = 25) -> torch.nn.Module:
    """A pretext model after ``steps`` SGD steps on ``images(16, step)``, seeded, in eval mode."""
    torch.manual_seed(0)
    m = build_method("pretext", width=WIDTH, options=options)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    for step in range(steps):
        out = m(m.make_views(images(16, step), torch.Generator().manual_seed(step)))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return m.eval()


def test_pretext_learns_a_learnable_task_and_none_stays_the_floor():
    m = _trained({"task": "rotation"}, _upright)
    floor = build_method("pretext", width=WIDTH, options={"task": "rotation"})  # random init: `none` + a head
    test = m.make_views(_upright(32, 999), torch.Generator().manual_seed(999))
    m.eval(), floor.eval()
    with torch.no_grad():
        acc = (m(test)["acc/rotation"]).item()
        acc0 = (floor(test)["acc/rotation"]).item()
    assert acc > 0.5 > acc0 - 0.2  # chance is 0.25


def test_trainer_passes_labels_and_logs_the_online_linear_classifier(tmp_path):
    cfg = load_config(
        None,
        {
            "model.method": "pretext", "model.options.class_term": "add", "model.options.copies": "sampled",
            "data.dataset": "shapes_upright", "data.train_subset": 64, "optim.batch_size": 32,
            "optim.epochs": 1, "model.width": WIDTH, "train.online_linear": True, "train.out": str(tmp_path),
            "train.device": "cpu", "train.log_every": 1, "data.knn_queries": 50, "train.knn_every": 0,
        },
    )  # fmt: skip
    run = fit(cfg)
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "acc/class" in recs[0] and "acc/rotation" in recs[0]
    epoch = recs[-1]
    # the epoch record averages every step's parts (log_every 1: every step is logged too)
    logged = [r["loss/rotation"] for r in recs if "loss/rotation" in r]
    assert len(logged) == 2 and epoch["loss_epoch/rotation"] == pytest.approx(sum(logged) / 2, rel=1e-5)
    assert epoch["acc_epoch/class"] == pytest.approx(
        sum(r["acc/class"] for r in recs if "acc/class" in r) / 2
    )
    assert 0.0 <= epoch["online_linear_acc"] <= 1.0 and 0.0 <= epoch["online_linear_train_acc"] <= 1.0


def _ramps(n: int, seed: int = 0) -> torch.Tensor:
    """Reddish images that brighten from left to right (plus noise): a mirror reverses the ramp, gray removes the
    colour, and no crop, jitter or resize of the recipes undoes either."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 160, 32).expand(n, 1, 32, 32)
    x = ramp + torch.randint(0, 20, (n, 1, 32, 32), generator=g)
    return torch.cat([x + 80, x * 0.3, x * 0.3], dim=1).clamp(0, 255).to(torch.uint8)


def _mirrored(views: torch.Tensor) -> torch.Tensor:
    """Which views run dark to bright right to left (their left edge brighter than their right)."""
    return views[..., :3].mean((1, 2, 3)) > views[..., -3:].mean((1, 2, 3))


def _gray(views: torch.Tensor) -> torch.Tensor:
    return (views.amax(1) - views.amin(1)).amax((1, 2)) < 1e-6


@pytest.mark.parametrize("method,task_key", [("pretext", "task"), ("essl", "transform")])
def test_task_free_base_makes_the_hflip_label_readable_from_the_view(method, task_key):
    """The base views mirror at random (p = 0.5) before the hflip label: then a view's orientation says nothing
    about its label. With ``task_free_base`` every label-1 view and no label-0 view is mirrored."""
    x = _ramps(256)

    def agreement(free: bool) -> float:
        m = build_method(method, width=WIDTH, options={task_key: "hflip", "task_free_base": free})
        v = m.make_views(x, torch.Generator().manual_seed(0))
        return (_mirrored(v["xr"]) == (v["yr"] == 1)).float().mean().item()

    assert agreement(True) == 1.0
    assert 0.35 < agreement(False) < 0.65, (
        "the recipe's mirror no longer hides the label: update methods.md §4.4"
    )


def test_task_free_base_keeps_colour_in_essl_grayscale_label_0_views():
    """SimCLR's recipe grays a fifth of the head's small views before the grayscale label; the option stops it and
    leaves the two SimCLR views on the recipe (they still gray at random)."""
    x = _ramps(256)

    def views(free: bool) -> dict[str, torch.Tensor]:
        m = build_method("essl", width=WIDTH, options={"transform": "grayscale", "task_free_base": free})
        return m.make_views(x, torch.Generator().manual_seed(0))

    free, kept = views(True), views(False)
    assert not _gray(free["xr"][free["yr"] == 0]).any() and _gray(free["xr"][free["yr"] == 1]).all()
    assert 0.1 < _gray(kept["xr"][kept["yr"] == 0]).float().mean() < 0.3
    assert 0.1 < _gray(free["x1"]).float().mean() < 0.3


def test_task_free_base_is_off_by_default_so_old_configs_draw_the_same_views():
    """Without the option the views are the recipes' as before: the light recipe then the labels (pretext), and
    SimCLR's recipe for both views and the 16 px head view (E-SSL)."""
    x = _ramps(8)
    pretext = build_method("pretext", width=WIDTH, options={"task": "hflip"})
    essl = build_method("essl", width=WIDTH, options={"transform": "grayscale"})
    assert pretext.config.task_free_base is False and essl.config.task_free_base is False

    v, g = pretext.make_views(x, torch.Generator().manual_seed(3)), torch.Generator().manual_seed(3)
    want = expand(augment(x, light_recipe(32), g)[0], "hflip")
    assert torch.equal(v["xr"], want.images) and torch.equal(v["yr"], want.labels)

    v, g = essl.make_views(x, torch.Generator().manual_seed(3)), torch.Generator().manual_seed(3)
    r = get_recipe("simclr")
    x1, x2 = augment(x, r, g)[0], augment(x, r, g)[0]
    small = expand(augment(x, get_recipe("simclr", 16), g)[0], "grayscale")
    assert torch.equal(v["x1"], x1) and torch.equal(v["x2"], x2) and torch.equal(v["xr"], small.images)


def test_hflip_is_learned_with_a_task_free_base_and_not_without():
    """Trained alike on left-to-right ramps, the hflip head reads clean test views' labels only when its training
    views were not mirrored at random before the label (chance is 0.5)."""

    clean = build_method("pretext", width=WIDTH, options={"task": "hflip", "task_free_base": True})
    test = clean.make_views(_ramps(64, 999), torch.Generator().manual_seed(999))
    models = [_trained({"task": "hflip", "task_free_base": free}, _ramps) for free in (True, False)]
    with torch.no_grad():
        learned, hidden = (m(test)["acc/hflip"].item() for m in models)
    assert learned > 0.9 and 0.3 < hidden < 0.7, (learned, hidden)
