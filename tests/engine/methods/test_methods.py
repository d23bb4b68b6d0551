"""Every registered method builds, trains a step, embeds; method-specific mechanics checked by hand."""

from __future__ import annotations

import pytest
import torch

from engine.core.errors import ConfigError
from engine.methods import METHODS, SPACES, build_method, method_config
from engine.methods.losses import equimod_loss, head_norm_gap

WIDTH = 0.0625  # 32-d features: seconds per test on CPU
FEAT = 32
B = 8


def _images(n: int = B, seed: int = 0, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def _views(model, seed: int = 0, n: int = B) -> dict[str, torch.Tensor]:
    return model.make_views(_images(n, seed), torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- registry-wide
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_builds_and_trains_one_step(name: str):
    torch.manual_seed(0)
    model = build_method(name, width=WIDTH)
    assert model.build_kwargs["name"] == name and model.config.lr_scale > 0
    out = model(_views(model))
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    for key, value in out.items():
        assert value.dim() == 0 and torch.isfinite(value), key
        if key != "loss":
            assert not value.requires_grad, f"diagnostic {key} must be detached"
    out["loss"].backward()
    if not METHODS[name].trainable:
        assert name == "none"
        return
    heads = [n for n, _ in model.named_children() if n != "backbone"]
    assert heads, name
    for head in heads:
        grads = [p.grad for p in getattr(model, head).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), f"{name}.{head} has no grad"
    assert model.backbone.stem[0].weight.grad is not None


@pytest.mark.parametrize("name", sorted(METHODS))
def test_embed_returns_documented_spaces(name: str):
    model = build_method(name, width=WIDTH).eval()
    with torch.no_grad():
        spaces = model.embed(torch.rand(3, 3, 32, 32))
    assert tuple(spaces) == SPACES[name]
    dims = {k: v.shape[1] for k, v in spaces.items()}
    expected = {
        "backbone": FEAT,
        "projector": 128,
        "equivariant": 128,
        "rotation_logits": 4,
        "invariant_part": 25,  # floor(0.8 * 32)
        "equivariant_part": 7,
    }
    assert dims == {k: expected[k] for k in dims}
    assert all(v.shape[0] == 3 for v in spaces.values())


@pytest.mark.parametrize("name", ["simclr", "essl", "equimod", "clever", "rotation"])
def test_loss_decreases_on_a_fixed_batch(name: str):
    torch.manual_seed(0)
    model = build_method(name, width=WIDTH)
    views = _views(model, seed=1, n=8)
    # the rotation reference's norm-free head needs a larger step to move within 20 steps
    opt = torch.optim.SGD(model.parameters(), lr=0.2 if name == "rotation" else 0.05, momentum=0.9)
    losses = []
    for _ in range(20):
        loss = model(views)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses


def test_make_views_is_deterministic_under_a_generator():
    model = build_method("equimod", width=WIDTH)
    a, b = _views(model, seed=3), _views(model, seed=3)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = _views(model, seed=4)
    assert not torch.equal(a["x1"], c["x1"])


# ----------------------------------------------------------------------------------------------- configs
def test_configs_carry_paper_defaults():
    assert method_config("simclr").temperature == 0.5
    essl = method_config("essl")
    assert (essl.rot_weight, essl.lr_scale, essl.rot_hidden) == (0.4, 2.0, (2048, 2048))
    eq = method_config("equimod")
    assert (eq.temperature, eq.temperature_y, eq.equi_weight, eq.y_dim) == (0.5, 0.2, 1.0, 128)
    cl = method_config("clever")
    assert (cl.split, cl.sep_weight, cl.reg_weight) == (0.8, 1.0, 0.001)
    assert method_config("essl", {"rot_weight": 0.2, "rot_hidden": [64]}).rot_hidden == (64,)


def test_unknown_method_option_or_value_raise_config_error_naming_it():
    with pytest.raises(ConfigError, match=r"'byol'.*choose from.*simclr"):
        build_method("byol")
    with pytest.raises(ConfigError, match=r"\['lambda'\].*allowed keys.*rot_weight"):
        method_config("essl", {"lambda": 0.4})
    with pytest.raises(ConfigError, match=r"'temperature'.*out of range.*\[0.001, 10.0\]"):
        method_config("simclr", {"temperature": 0.0})
    with pytest.raises(ConfigError, match=r"'split'.*out of range"):
        method_config("clever", {"split": 1.0})
    with pytest.raises(ConfigError, match=r"'proj_dim'.*integer"):
        method_config("simclr", {"proj_dim": "big"})
    with pytest.raises(ConfigError, match=r"'proj_hidden'.*layer sizes"):
        method_config("simclr", {"proj_hidden": [0]})
    with pytest.raises(ConfigError, match="backbone"):
        build_method("simclr", backbone="vit")


# ----------------------------------------------------------------------------------------------- E-SSL
def test_essl_rotation_views_are_four_rotations_of_a_small_view():
    model = build_method("essl", width=WIDTH)
    views = _views(model, seed=5)
    xr, yr = views["xr"], views["yr"]
    assert views["x1"].shape == (B, 3, 32, 32)
    assert xr.shape == (4 * B, 3, 16, 16) and yr.shape == (4 * B,)
    assert sorted(yr.tolist()) == sorted([0, 1, 2, 3] * B)
    # Undo each rotation: every small view must reappear exactly once per label 0..3.
    upright = torch.stack([torch.rot90(x, -int(k), dims=(-2, -1)) for x, k in zip(xr, yr)])
    groups: dict[bytes, list[int]] = {}
    for img, k in zip(upright, yr.tolist()):
        groups.setdefault(img.numpy().tobytes(), []).append(k)
    assert len(groups) == B
    assert all(sorted(labels) == [0, 1, 2, 3] for labels in groups.values())


def test_essl_rotation_accuracy_is_reported_and_weighted():
    model = build_method("essl", width=WIDTH, options={"rot_weight": 0.0})
    out = model(_views(model))
    assert 0.0 <= out["acc/rotation"].item() <= 1.0
    assert out["loss"].item() == pytest.approx(out["loss/inv"].item())


# ----------------------------------------------------------------------------------------------- EquiMod
def test_equimod_param_vectors_and_zscore_buffers():
    model = build_method("equimod", width=WIDTH)
    views = _views(model)
    assert views["p1"].shape == (B, 15) and views["x0"].shape == (B, 3, 32, 32)
    assert torch.allclose(views["x0"], _images().float() / 255, atol=1e-5)  # x0 = the original
    state = model.state_dict()
    assert state["param_mean"].shape == (15,) and state["param_std"].shape == (15,)
    assert (model.param_std > 0).all()
    assert model.predictor[0].in_features == 128 + 128  # u([y0, e_p(p)])
    # z-scoring happens inside predict(): feeding the mean vector gives e_p's input = 0
    enc_in = []
    hook = model.param_encoder.register_forward_hook(lambda m, i, o: enc_in.append(i[0]))
    model.eval()
    with torch.no_grad():
        model.predict(torch.zeros(2, 128), model.param_mean.expand(2, 15))
        model.predict(torch.zeros(1, 128), (model.param_mean + model.param_std)[None])
    hook.remove()
    assert torch.allclose(enc_in[0], torch.zeros(2, 15), atol=1e-6)
    assert torch.allclose(enc_in[1], torch.ones(1, 15), atol=1e-5)


def test_equimod_predict_is_consistent_with_training_forward():
    torch.manual_seed(0)
    model = build_method("equimod", width=WIDTH)
    for _ in range(2):  # populate BN running statistics
        model(_views(model, seed=6))
    model.eval()
    views = _views(model, seed=7)
    with torch.no_grad():
        out = model(views)
        y0 = model.embed(views["x0"])["equivariant"]
        y_t = torch.cat([model.embed(views["x1"])["equivariant"], model.embed(views["x2"])["equivariant"]])
        y_hat = model.predict(torch.cat([y0, y0]), torch.cat([views["p1"], views["p2"]]))
    ref = equimod_loss(y_t, y_hat, model.config.temperature_y)
    assert out["loss/equi"].item() == pytest.approx(ref.item(), rel=1e-4)
    cos = torch.nn.functional.cosine_similarity
    eqgain = (cos(y_t, y_hat) - cos(y_t, torch.cat([y0, y0]))).mean()
    assert out["eqgain"].item() == pytest.approx(eqgain.item(), abs=1e-4)


# ----------------------------------------------------------------------------------------------- CLeVER
def test_clever_slices_and_regulariser():
    assert build_method("clever", width=1.0).n_ir == 409  # 409 IR + 103 EF at ResNet-18 width 1
    model = build_method("clever", width=WIDTH)
    assert (model.n_ir, model.n_ef) == (25, 7)
    assert model.projector[0].in_features == 25 and model.ef_projector[0].in_features == 7
    x = torch.rand(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        spaces = model.embed(x)
        assert torch.equal(
            torch.cat([spaces["invariant_part"], spaces["equivariant_part"]], 1), spaces["backbone"]
        )
    sq_ir = sum(float((p.detach().double() ** 2).sum()) for p in model.projector.parameters())
    sq_ef = sum(float((p.detach().double() ** 2).sum()) for p in model.ef_projector.parameters())
    gap = head_norm_gap(model.projector.parameters(), model.ef_projector.parameters())
    assert gap.item() == pytest.approx(abs(sq_ir - sq_ef), rel=1e-5)
    model.train()
    out = model(_views(model))
    expected = out["loss/inv"] + 1.0 * out["loss/sep"] + 0.001 * out["loss/reg"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["loss/reg"].item() == pytest.approx(abs(sq_ir - sq_ef), rel=1e-4)
    assert 0.0 <= out["loss/sep"].item() <= 1.0


# ----------------------------------------------------------------------------------------------- references
def test_rotation_reference_and_none():
    rot = build_method("rotation", width=WIDTH)
    views = _views(rot)
    assert views["xr"].shape == (4 * B, 3, 32, 32) and sorted(views["yr"].tolist()) == sorted(
        [0, 1, 2, 3] * B
    )
    none = build_method("none", width=WIDTH)
    assert METHODS["none"].trainable is False and METHODS["rotation"].trainable is True
    out = none(_views(none))
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad
