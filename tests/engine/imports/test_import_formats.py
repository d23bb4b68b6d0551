"""Every import format: a model built locally (random weights, nothing downloaded), saved exactly as its library
saves it, imported, and its imported embedding compared with the original model's on the same input (1e-5)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from engine.augment import equimod_vector, get_recipe, identity_params, param_stats, sample_params
from engine.imports.convert import import_checkpoint
from engine.methods import Predicts
from engine.train.checkpoint import load_model, read_info

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TOL = 1e-5


def _norm(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, so a mis-mapped running_mean would show."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= TOL * max(1.0, a.abs().max().item())


def _imported(tmp_path: Path, src: Path, fmt: str, **kw):
    side = import_checkpoint(src, fmt, tmp_path / "imported", **kw)
    model, info = load_model(side)
    return model, info


@pytest.mark.parametrize(
    ("arch", "size"),
    [("resnet18", 224), ("resnet34", 64), ("resnet50", 64), ("vit_b_16", 32), ("convnext_tiny", 64)],
)
def test_torchvision_state_dict(tmp_path: Path, arch: str, size: int) -> None:
    torch.manual_seed(0)
    kwargs = {"image_size": size} if arch.startswith("vit") else {}
    net = _randomise_bn(getattr(torchvision.models, arch)(weights=None, **kwargs))
    torch.save(net.state_dict(), tmp_path / "model.pth")  # how torchvision users save a fine-tuned model
    model, info = _imported(tmp_path, tmp_path / "model.pth", "torchvision", arch=arch, input_size=size)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        feats = {}
        # the feature the final Linear reads (convnext: after its LayerNorm2d + Flatten)
        last = {"resnet": net.fc if arch.startswith("resnet") else None}["resnet"]
        last = last or (net.heads if arch.startswith("vit") else net.classifier[2])
        hook = last.register_forward_hook(lambda m, i, o: feats.setdefault("h", i[0]))
        net(_norm(x, *IMAGENET))
        hook.remove()
        _close(model.embed(x)["backbone"], feats["h"])
    assert info["imported"]["format"] == "torchvision" and info["preprocessing"]["image_size"] == size
    assert len(info["imported"]["source_sha256"]) == 64 and info["imported"]["key_map"]


def test_plain_safetensors_with_projector(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _randomise_bn(torchvision.models.resnet18(weights=None))
    net.fc = nn.Identity()
    proj = _randomise_bn(
        nn.Sequential(nn.Linear(512, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 16))
    )
    tensors = {**{f"backbone.{k}": v for k, v in net.state_dict().items()}}
    tensors.update({f"projector.{k}": v for k, v in proj.state_dict().items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "w.safetensors"))
    model, info = _imported(
        tmp_path, tmp_path / "w.safetensors", "safetensors", arch="resnet18", input_size=64
    )
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        h = net(_norm(x, *IMAGENET))
        out = model.embed(x)
    _close(out["backbone"], h)
    _close(out["projector"], proj(h))
    assert info["spaces"] == ["backbone", "projector"]


def test_timm_vit_cls_and_pooled(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "model.safetensors"))
    model, info = _imported(
        tmp_path, tmp_path / "model.safetensors", "timm", arch="vit_tiny_patch16_224", input_size=32
    )
    cfg = net.pretrained_cfg
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        tokens = net.forward_features(_norm(x, cfg["mean"], cfg["std"]))
        out = model.embed(x)
        _close(out["backbone"], net.forward_head(tokens, pre_logits=True))
        _close(out["cls"], tokens[:, 0])
    assert (
        model.spaces == ("backbone", "cls") and info["preprocessing"]["interpolation"] == cfg["interpolation"]
    )


class SoloLike(nn.Module):
    """The module layout solo-learn's BaseMethod builds on CIFAR (resnet18, fc removed, 3x3 stem with padding 2,
    no max-pool), with a SimCLR projector and the online classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torchvision.models.resnet18(weights=None)
        self.backbone.fc = nn.Identity()
        self.backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
        self.backbone.maxpool = nn.Identity()
        self.classifier = nn.Linear(512, 10)
        self.projector = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 32))


def _lightning_ckpt(state: dict) -> dict:
    """The dict PyTorch Lightning's Trainer.save_checkpoint writes (plain containers and tensors only)."""
    return {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.1.3",
        "state_dict": OrderedDict(state),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4, "completed": 3}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': None}": {"best_model_score": None, "best_model_path": "x.ckpt"}
        },
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.3, "params": [0, 1]}]}],
        "lr_schedulers": [{"last_epoch": 3, "base_lrs": [0.3]}],
    }


def test_solo_learn_lightning_ckpt(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _randomise_bn(SoloLike())
    torch.save(_lightning_ckpt(net.state_dict()), tmp_path / "simclr-cifar10.ckpt")
    model, info = _imported(tmp_path, tmp_path / "simclr-cifar10.ckpt", "solo-learn", arch="resnet18")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        h = net.backbone(_norm(x, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
        out = model.embed(x)
    _close(out["backbone"], h)
    _close(out["projector"], net.projector(h))
    assert "classifier" in info["imported"]["unused_prefixes"]


def test_strict_false_imports_a_backbone_without_heads(tmp_path: Path) -> None:
    net = _randomise_bn(SoloLike())
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("projector.")}
    torch.save(_lightning_ckpt(state), tmp_path / "b.ckpt")
    from engine.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"1 missing: projector\.\* .*--strict false"):
        import_checkpoint(tmp_path / "b.ckpt", "solo-learn", tmp_path / "x", arch="resnet18")
    model, _ = _imported(tmp_path, tmp_path / "b.ckpt", "solo-learn", arch="resnet18", strict=False)
    assert model.spaces == ("backbone",)


class LightlySimCLR(nn.Module):
    """lightly's documented SimCLR example: backbone = the ResNet's children but fc; SimCLRProjectionHead's
    ``layers`` Sequential (Linear, BatchNorm1d, ReLU, Linear)."""

    def __init__(self) -> None:
        super().__init__()
        resnet = torchvision.models.resnet18(weights=None)
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = nn.Module()
        self.projection_head.layers = nn.Sequential(
            nn.Linear(512, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 16)
        )

    def forward(self, x):
        return self.backbone(x).flatten(start_dim=1)


def test_lightly_example(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _randomise_bn(LightlySimCLR())
    torch.save(net.state_dict(), tmp_path / "simclr.pth")
    model, _ = _imported(tmp_path, tmp_path / "simclr.pth", "lightly", arch="resnet18", input_size=64)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        h = net(_norm(x, *IMAGENET))
        out = model.embed(x)
    _close(out["backbone"], h)
    _close(out["projector"], net.projection_head.layers(h))


class ESSLBranch(nn.Module):
    """rdangovs/essl cifar10 ``Branch`` layout: encoder (torchvision-layout ResNet-18, 3x3/1 stem, no max-pool, no
    fc), projector.net, net = Sequential(encoder, projector) (shared modules) and the rotation head predictor2."""

    def __init__(self) -> None:
        super().__init__()
        enc = torchvision.models.resnet18(weights=None)
        enc.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        enc.maxpool, enc.fc = nn.Identity(), nn.Identity()
        self.encoder = enc
        self.projector = nn.Module()
        self.projector.net = nn.Sequential(
            nn.Linear(512, 64, bias=False),
            nn.BatchNorm1d(64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 32, bias=False),
            nn.BatchNorm1d(32, affine=False),
        )
        self.net = nn.Sequential(self.encoder, self.projector)
        self.predictor2 = nn.Sequential(
            nn.Linear(512, 64),
            nn.LayerNorm(64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 64),
            nn.LayerNorm(64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 4),
        )


def test_essl_authors_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _randomise_bn(ESSLBranch())
    torch.save(dict(epoch=50, state_dict=net.state_dict()), tmp_path / "50.pth")
    model, _ = _imported(tmp_path, tmp_path / "50.pth", "essl")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        h = net.encoder(_norm(x, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)))
        out = model.embed(x)
    _close(out["backbone"], h)
    _close(out["projector"], net.projector.net(h))
    _close(out["rotation_logits"], net.predictor2(h))
    assert model.rot_size == 16


class EquiModLike(nn.Module):
    """ADevillers/EquiMod ``EquiMod`` layout on CIFAR (torchvision resnet, fc removed, 3x3/1 stem, no max-pool)
    with the SimCLR version's 15-d parameter vector; small head widths for speed."""

    def __init__(self, p_dim: int = 15, y: int = 16) -> None:
        super().__init__()
        self.resnet = torchvision.models.resnet18(weights=None, zero_init_residual=True)
        self.resnet.fc = nn.Identity()
        self.resnet.conv1 = nn.Conv2d(3, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
        self.resnet.maxpool = nn.Identity()
        self.proj_head_inv = nn.Sequential(
            nn.Linear(512, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32)
        )
        self.proj_head_eq = nn.Sequential(
            nn.Linear(512, 64, bias=False),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Linear(64, 64, bias=False),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Linear(64, y, bias=False),
            nn.BatchNorm1d(y, affine=False),
        )
        self.proj_head_t = nn.Sequential(nn.Linear(p_dim, y, bias=False), nn.BatchNorm1d(y))
        self.predictor_eq = nn.Sequential(nn.Linear(y + y, y, bias=False), nn.BatchNorm1d(y, affine=False))


def test_equimod_authors_checkpoint_keeps_its_predictor(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _randomise_bn(EquiModLike())
    ckpt = {
        "last_epoch": 799,
        "log_dir": "runs/x",
        "model": net.state_dict(),
        "momentum_model": {},
        "optimizer_repr": {"state": {}, "param_groups": []},
    }
    torch.save(ckpt, tmp_path / "expe_0_799.pt")
    model, info = _imported(tmp_path, tmp_path / "expe_0_799.pt", "equimod")
    assert isinstance(model, Predicts) and model.config.recipe == "simclr"
    x = torch.rand(3, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    p = equimod_vector(sample_params(get_recipe("simclr", 32), 3, (32, 32), g), (32, 32)).float()
    mean, std = param_stats(get_recipe("simclr", 32), (32, 32))
    with torch.no_grad():
        h = net.resnet(_norm(x, (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)))
        out = model.embed(x)
        y0 = net.proj_head_eq(h)
        want = net.predictor_eq(torch.cat([y0, net.proj_head_t((p - mean) / std)], dim=1))
        _close(out["backbone"], h)
        _close(out["projector"], net.proj_head_inv(h))
        _close(out["equivariant"], y0)
        _close(model.predict(out["equivariant"], p), want)
    assert info["param_stats"]["mean"] == pytest.approx(mean.tolist())
    assert identity_params  # the identity view is what embed sees for un-augmented images


def test_equimod_byol_layout_keeps_backbone_and_heads(tmp_path: Path) -> None:
    """The BYOL version's 18-d parameters do not match EquiLab's vector: imported without its own predictor."""
    net = _randomise_bn(EquiModLike(p_dim=18))
    net.predictor_inv = nn.Sequential(
        nn.Linear(32, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32)
    )
    torch.save({"model": net.state_dict()}, tmp_path / "byol.pt")
    model, info = _imported(tmp_path, tmp_path / "byol.pt", "equimod")
    assert not isinstance(model, Predicts)
    assert model.spaces == ("backbone", "projector", "predictor", "equivariant")
    assert any("post-hoc" in n for n in info["imported"]["notes"])
    assert read_info(tmp_path / "imported.json")["method"] == "imported"
