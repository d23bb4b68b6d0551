"""engine.lab.models.load_model: a real checkpoint loads; a damaged one fails with the command that replaces it."""

from __future__ import annotations

import shlex

import pytest
import torch

from engine.core.errors import CheckpointError
from engine.lab.models import load_model, train_command
from engine.methods import build_method
from engine.train.checkpoint import save_checkpoint


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = build_method("simclr", width=0.125, image_size=32).eval()
    config = {"data": {"dataset": "shapes_upright"}, "model": {"method": "simclr"}}
    save_checkpoint(tmp_path / "m", model, config=config, epoch=1, step=5)
    return tmp_path / "m.safetensors"


def test_load_model_returns_the_model_and_its_info(ckpt):
    model, info = load_model(ckpt)
    assert info["method"] == "simclr" and not model.training
    assert "backbone" in model.embed(torch.zeros(1, 3, 32, 32))


def test_a_damaged_checkpoint_carries_a_train_command_for_its_method_and_dataset(ckpt):
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CheckpointError) as e:
        load_model(ckpt)
    assert e.value.fix == train_command(ckpt)
    cmd = shlex.split(e.value.fix, comments=True)
    assert cmd == [
        "python",
        "-m",
        "engine",
        "train",
        "--method",
        "simclr",
        "--dataset",
        "shapes_upright",
        "--out",
        "runs/<name>",
    ]
    assert e.value.fix.endswith(f"# or restore {ckpt}")
    assert "python -m engine" not in e.value.reason and str(e.value).endswith(e.value.fix)


def test_train_command_without_a_readable_sidecar_uses_placeholders(tmp_path):
    assert train_command(tmp_path / "gone.safetensors").startswith(
        "python -m engine train --method '<method>' --dataset shapes --out runs/<name>"
    )
