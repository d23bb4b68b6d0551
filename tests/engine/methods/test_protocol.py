"""Every registered method satisfies the Method protocol, structurally and in a small real call."""

from __future__ import annotations

import pytest
import torch

from engine.methods import METHODS, build_method
from engine.methods.protocol import Method, Predicts


@pytest.mark.parametrize("name", sorted(METHODS))
def test_built_method_satisfies_the_protocol(name: str) -> None:
    torch.manual_seed(0)
    model = build_method(name, width=0.0625, image_size=16)
    assert isinstance(model, Method)
    assert model.name == name and model.build_kwargs["name"] == name
    assert model.image_size == 16 and model.config.lr_scale > 0
    assert isinstance(type(model).trainable, bool) and model.spaces

    images = torch.randint(
        0, 256, (4, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    views = model.make_views(images, torch.Generator().manual_seed(2))
    assert views and all(isinstance(v, torch.Tensor) for v in views.values())
    out = model(views)
    assert out["loss"].dim() == 0 and out["loss"].requires_grad
    assert all(v.dim() == 0 and not v.requires_grad for k, v in out.items() if k != "loss")
    with torch.no_grad():
        emb = model.eval().embed(torch.rand(3, 3, 16, 16))
    assert tuple(emb) == model.spaces
    assert all(v.dim() == 2 and v.shape[0] == 3 for v in emb.values())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_predict_capability_only_where_a_predictor_exists(name: str) -> None:
    model = build_method(name, width=0.0625, image_size=16).eval()
    assert isinstance(model, Predicts) == (name == "equimod")
    if isinstance(model, Predicts):
        y0 = model.embed(torch.rand(2, 3, 16, 16))["equivariant"]
        assert model.predict(y0, torch.zeros(2, model.param_mean.numel())).shape == y0.shape


def test_protocol_rejects_a_bare_module() -> None:
    assert not isinstance(torch.nn.Linear(2, 2), Method)
