"""Hostile files are refused with one clear message and nothing in them runs; the two hostile-sidecar fixes;
and an imported checkpoint works through the CLI, the store builder and ``eval``."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from engine.cli import main
from engine.core.errors import CheckpointError, ConfigError
from engine.imports.convert import import_checkpoint
from engine.train.checkpoint import load_model


class Payload:
    """Unpickling this creates a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class Box:
    """A user object holding a state dict, as some Lightning modules save it."""

    def __init__(self, sd: dict) -> None:
        self.sd = sd


def test_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "evil": Payload(marker)}, tmp_path / "evil.ckpt")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Payload(marker), protocol=2))
    for name in ("evil.ckpt", "evil.pkl"):
        with pytest.raises(CheckpointError, match=r"needs full unpickling.*refuses.*safetensors"):
            import_checkpoint(tmp_path / name, "solo-learn", tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out.json").exists()


def test_lightning_state_dict_inside_a_pickled_object_is_refused(tmp_path: Path) -> None:
    torch.save(
        {"state_dict": Box({"backbone.conv1.weight": torch.zeros(64, 3, 3, 3)})}, tmp_path / "box.ckpt"
    )
    with pytest.raises(CheckpointError, match="needs full unpickling"):
        import_checkpoint(tmp_path / "box.ckpt", "solo-learn", tmp_path / "out")


def test_truncated_safetensors_is_refused(tmp_path: Path) -> None:
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, str(tmp_path / "w.safetensors"))
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        import_checkpoint(tmp_path / "w.safetensors", "safetensors", tmp_path / "out")


def test_wrong_shapes_missing_and_unexpected_in_one_message(tmp_path: Path) -> None:
    sd = torchvision.models.resnet18(weights=None).state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    del sd["layer4.1.bn2.bias"]
    sd["extra.thing"] = torch.zeros(2)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        import_checkpoint(tmp_path / "bad.pth", "torchvision", tmp_path / "out", arch="resnet18")
    msg = str(e.value)
    assert (
        "1 missing: layer4.1.bn2.bias" in msg
        and "1 wrongly shaped: layer1.0.conv1.weight (3, 3, 3, 3)" in msg
    )
    assert "1 unexpected: extra.thing" in msg and "\n" not in msg


def test_cli_prints_one_line(tmp_path: Path, capsys) -> None:
    torch.save({"evil": Payload(tmp_path / "ran")}, tmp_path / "evil.pt")
    rc = main(["import", str(tmp_path / "evil.pt"), "--format", "torchvision", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("name", [".", "..", ""])
def test_sidecar_weights_file_dot_is_one_line_error(tmp_path: Path, name: str) -> None:
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "m.pth")
    side = import_checkpoint(tmp_path / "m.pth", "torchvision", tmp_path / "ck", input_size=32)
    info = json.loads(side.read_text())
    info["weights"]["file"] = name
    side.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="malformed"):
        load_model(side)


def test_resume_from_a_foreign_last_pt_stops(tmp_path: Path) -> None:
    from engine.train.config import load_config
    from engine.train.loop import fit

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, run / "checkpoints" / "last.pt")
    cfg = load_config(None, [f"train.out={run}", "train.device=cpu", "data.options.size=64"])
    with pytest.raises(ConfigError, match="nothing to resume from"):
        fit(cfg, resume=True)
    assert sorted(os.listdir(run / "checkpoints")) == ["last.pt"]


def test_imported_model_builds_a_store_and_evaluates(tmp_path: Path) -> None:
    from engine.eval.context import EvalContext
    from engine.eval.evaluate import evaluate
    from engine.store.build import EmbedJob, build_store
    from engine.store.format import StoreOptions, open_store

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    rc = main(
        [
            "import",
            str(tmp_path / "r18.pth"),
            "--format",
            "torchvision",
            "--arch",
            "resnet18",
            "--out",
            str(tmp_path / "ck" / "r18"),
            "--input-size",
            "32",
        ]
    )
    assert rc == 0
    ckpt = tmp_path / "ck" / "r18.safetensors"
    opts = StoreOptions(umap=False)
    stores = {
        split: open_store(
            build_store(EmbedJob(ckpt, "shapes", split, store_root=tmp_path, device="cpu", limit=n), opts)
        )
        for split, n in (("train", 64), ("test", 32))
    }
    assert stores["test"].spaces == ["backbone"] or list(stores["test"].spaces) == ["backbone"]
    rows = evaluate(EvalContext(test=stores["test"], train=stores["train"]), ("knn",))
    assert any(r["metric"].startswith("knn") for r in rows)
