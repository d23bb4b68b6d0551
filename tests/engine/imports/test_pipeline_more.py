"""An imported model through the rest of the pipeline: store, displacement evaluation (post-hoc predictor and
baselines), the picker's label, the "add a model" file list and import_into's name check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from engine.core.errors import ConfigError
from engine.eval.context import EvalContext
from engine.eval.evaluate import evaluate
from engine.lab.models import import_formats, import_into
from engine.methods import build_method
from engine.store.build import EmbedJob, build_store
from engine.store.discovery import find_checkpoints, find_importable, imported_format, model_label
from engine.store.format import StoreOptions, open_store
from engine.train.checkpoint import load_model, save_checkpoint


@pytest.fixture(scope="module")
def resnet_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random torchvision resnet18 saved as its users save a fine-tuned model (torch.save of a state dict)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("src") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_displacement_eval_runs_on_an_imported_model(tmp_path: Path, resnet_pth: Path) -> None:
    ckpt = import_into(
        resnet_pth, "torchvision", tmp_path / "checkpoints", "tv-r18", arch="resnet18", input_size=32
    )
    opts = StoreOptions(umap=False)
    stores = {
        split: open_store(
            build_store(
                EmbedJob(ckpt, "shapes", split, store_root=tmp_path / "stores", device="cpu", limit=n), opts
            )
        )
        for split, n in (("train", 96), ("test", 64))
    }
    ctx = EvalContext(test=stores["test"], train=stores["train"], n_fit=96, n_eval=64, n_sweep=8)
    rows = evaluate(ctx, ("displacement", "pretext"))
    v = {(r["space"], r["metric"]): r["value"] for r in rows}
    assert all(np.isfinite(r["value"]) or r.get("note") for r in rows)
    assert np.isfinite(v["backbone", "disp/method/cos"])
    posthoc = [r for r in rows if r["space"] == "backbone" and r["metric"] == "disp/method/cos"]
    assert posthoc[0]["predictor"] == "post-hoc"  # no predictor of its own: the post-hoc one
    for base in ("mean_delta", "params_only", "image_only"):
        assert ("backbone", f"disp/{base}/r2") in v
    assert -1 <= v["backbone", "invariance/relative"] <= 1
    assert not any(s.endswith("_logits") for s, _ in v)  # no pretext head: nothing reported


def test_recorded_preprocessing_resizes_small_images(tmp_path: Path, resnet_pth: Path) -> None:
    """A model imported at 64 px embeds a 32 px image as that image resized (bilinear, antialiased) to 64 px."""
    ckpt = import_into(resnet_pth, "torchvision", tmp_path, "r18-64", input_size=64)
    model, info = load_model(ckpt)
    assert info["preprocessing"]["image_size"] == 64 and info["preprocessing"]["interpolation"] == "bilinear"
    x = torch.rand(2, 3, 32, 32)
    up = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    with torch.no_grad():
        a, b = model.embed(x)["backbone"], model.embed(up)["backbone"]
    assert a.shape == (2, 512) and torch.allclose(a, b, atol=1e-5)


def test_picker_label_and_importable_files(tmp_path: Path, resnet_pth: Path) -> None:
    roots = {k: tmp_path / k for k in ("checkpoints", "runs", "stores", "imports")}
    for d in roots.values():
        d.mkdir()
    import_into(resnet_pth, "torchvision", roots["checkpoints"], "mine", input_size=32)
    torch.manual_seed(0)
    save_checkpoint(
        roots["checkpoints"] / "own",
        build_method("none", width=0.0625, image_size=32),
        config={},
        epoch=0,
        step=0,
    )
    found = find_checkpoints(roots)
    assert model_label("mine", found["mine"]) == "mine (imported: torchvision)"
    assert model_label("own", found["own"]) == "own" and imported_format(found["own"]) is None
    (roots["imports"] / "sub").mkdir()
    (roots["imports"] / "sub" / "w.ckpt").write_bytes(b"x")
    (roots["imports"] / "notes.txt").write_text("x")
    (roots["runs"] / "r" / "checkpoints").mkdir(parents=True)
    (roots["runs"] / "r" / "checkpoints" / "last.pt").write_bytes(b"x")
    outside = tmp_path / "outside.pth"
    outside.write_bytes(b"x")
    (roots["imports"] / "link.pth").symlink_to(outside)
    files = find_importable({k: roots[k] for k in ("imports", "checkpoints", "runs")})
    # EquiLab's own checkpoints (a .safetensors with its sidecar) and links leading outside are not offered
    assert set(files) == {"imports/sub/w.ckpt", "runs/r/checkpoints/last.pt"}


def test_import_into_checks_the_name(tmp_path: Path, resnet_pth: Path) -> None:
    assert "torchvision" in import_formats() and "equimod" in import_formats()
    for bad in ("", "../x", ".hidden", "a/b", "x" * 101):
        with pytest.raises(ConfigError, match="model name"):
            import_into(resnet_pth, "torchvision", tmp_path, bad)
    assert not list(tmp_path.iterdir())
    import_into(resnet_pth, "torchvision", tmp_path, "ok", input_size=32)
    with pytest.raises(ConfigError, match="already exists"):
        import_into(resnet_pth, "torchvision", tmp_path, "ok", input_size=32)
