"""SyncBatchNorm under DDP for methods whose reference code used it (EquiMod's ``sync_bn``), checked in one process."""

from __future__ import annotations

import torch
from torch import nn

from engine.methods import build_method
from engine.train.loop import sync_batchnorm


def _n_sync(model: nn.Module) -> int:
    return sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


def test_batchnorm_becomes_syncbatchnorm_when_the_config_asks_and_ranks_are_several():
    model = build_method("equimod", width=0.0625)
    assert model.config.sync_bn and _n_sync(model) == 0
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    assert _n_sync(sync_batchnorm(model, world=1)) == 0  # one process: nothing to synchronise
    out = sync_batchnorm(model, world=2)
    assert out is model and _n_sync(model) > 0
    assert not any(type(m) is nn.BatchNorm1d or type(m) is nn.BatchNorm2d for m in model.modules())
    state = model.state_dict()
    assert state.keys() == keys.keys() and all(
        torch.equal(state[k], keys[k]) for k in keys
    )  # same checkpoint


def test_methods_without_the_flag_or_with_it_off_keep_batchnorm():
    for model in (
        build_method("simclr", width=0.0625),
        build_method("equimod", width=0.0625, options={"sync_bn": False}),
    ):
        assert _n_sync(sync_batchnorm(model, world=4)) == 0
