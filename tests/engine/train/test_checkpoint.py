"""Checkpoints: round trip, export, and refusal of pickles, damaged files, wrong sidecars and wrong shapes."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from engine.core.errors import CheckpointError
from engine.core.io import sha256_file
from engine.data import DataSpec
from engine.methods import build_method
from engine.train.checkpoint import (
    data_spec,
    export,
    load_model,
    load_train_state,
    read_info,
    save_checkpoint,
)


def _model(width: float = 0.0625):
    torch.manual_seed(0)
    return build_method("simclr", width=width, image_size=16)


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[torch.nn.Module, Path, torch.optim.Optimizer]:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(8, 3, 16, 16)
    out = model({"x1": x, "x2": x.flip(-1)})
    out["loss"].backward()
    opt.step()  # momentum buffers exist now
    stem = tmp_path / "run" / "checkpoints" / "last"
    save_checkpoint(
        stem,
        model,
        config={"model": {"method": "simclr"}},
        epoch=3,
        step=30,
        metrics={"knn_acc": 0.5},
        optimizer=opt,
    )
    return model, stem, opt


def test_round_trip_weights_and_embeddings(saved) -> None:
    model, stem, _opt = saved
    x = torch.rand(4, 3, 16, 16)
    for path in (stem.with_suffix(".json"), stem.with_suffix(".safetensors"), stem.parent.parent):
        loaded, info = load_model(path)
        assert not loaded.training
        for k, v in model.state_dict().items():
            assert torch.equal(v, loaded.state_dict()[k]), k
        model.eval()
        assert torch.equal(model.embed(x)["projector"], loaded.embed(x)["projector"])
    info = read_info(stem)
    assert (info["method"], info["epoch"], info["step"], info["width"], info["image_size"]) == (
        "simclr",
        3,
        30,
        0.0625,
        16,
    )
    assert info["metrics"] == {"knn_acc": 0.5} and info["versions"]["torch"] == torch.__version__
    assert info["host"] == {"device": "cpu", "torch_threads": torch.get_num_threads()}
    assert len(info["weights"]["sha256"]) == 64 and info["config"]["model"]["method"] == "simclr"


def test_optimizer_state_round_trip(saved) -> None:
    model, stem, opt = saved
    fresh = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    extra = load_train_state(stem, fresh)
    assert extra == {}
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i, st in a["state"].items():
        assert torch.equal(st["momentum_buffer"], b["state"][i]["momentum_buffer"])


def test_export_has_no_resume_state(saved, tmp_path: Path) -> None:
    model, stem, _ = saved
    side = export(stem, tmp_path / "ship" / "shapes-simclr")
    assert sorted(p.name for p in side.parent.iterdir()) == [
        "shapes-simclr.json",
        "shapes-simclr.safetensors",
    ]
    loaded, info = load_model(side)
    assert info["state"] is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    with pytest.raises(CheckpointError, match="no resume state"):
        load_train_state(side, torch.optim.SGD(model.parameters(), lr=0.1))


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # unpickling would create the marker directory
        return (os.mkdir, (str(self.marker),))


def test_pickles_are_refused_without_executing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for name in ("evil.pt", "evil.pth", "evil.ckpt"):
        p = tmp_path / name
        p.write_bytes(pickle.dumps(_Evil(marker)))
        with pytest.raises(CheckpointError, match="pickle"):
            load_model(p)
    # a pickle disguised as .safetensors with a plausible sidecar
    (tmp_path / "fake.safetensors").write_bytes(pickle.dumps(_Evil(marker)))
    (tmp_path / "fake.json").write_text(
        json.dumps(
            {
                "format": "equilab-checkpoint/1",
                "method": "simclr",
                "weights": {"file": "fake.safetensors", "sha256": "0"},
            }
        )
    )
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(tmp_path / "fake.safetensors")
    assert not marker.exists()


def test_truncated_weights(saved) -> None:
    _, stem, _ = saved
    w = stem.with_suffix(".safetensors")
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated|sha256"):
        load_model(stem)


def test_sha_mismatch(saved) -> None:
    _, stem, _ = saved
    w = stem.with_suffix(".safetensors")
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF  # flip bits inside the last tensor: still parseable, different content
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(stem)


def test_bad_sidecars(saved) -> None:
    _, stem, _ = saved
    side = stem.with_suffix(".json")
    info = json.loads(side.read_text())
    side.write_text(json.dumps({**info, "method": "byol"}))
    with pytest.raises(CheckpointError, match="unknown method 'byol'"):
        load_model(stem)
    side.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not an EquiLab checkpoint"):
        load_model(stem)
    side.unlink()
    with pytest.raises(CheckpointError, match="not found"):
        load_model(stem)


def test_architecture_mismatch_names_tensor_and_shapes(saved) -> None:
    _, stem, _ = saved
    side = stem.with_suffix(".json")
    info = json.loads(side.read_text())
    info["build"]["width"] = 0.125  # same weights file, sidecar claims a wider backbone
    side.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"tensor 'backbone\.[\w.]+' has shape \(\d+, .*expects \(\d+"):
        load_model(stem)


def test_missing_run_dir_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path)


# ---- the broken-checkpoint corpus, parametrised (issue 7) ------------------------------------------------


def _sidecar(stem: Path) -> dict:
    return json.loads(stem.with_suffix(".json").read_text())


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_of_every_protocol_disguised_as_safetensors_never_runs(
    saved, tmp_path: Path, protocol
) -> None:
    _, stem, _ = saved
    marker = tmp_path / "pwned"
    w = stem.with_suffix(".safetensors")
    w.write_bytes(pickle.dumps(_Evil(marker), protocol=protocol))
    info = _sidecar(stem)
    info["weights"]["sha256"] = (
        __import__("hashlib").sha256(w.read_bytes()).hexdigest()
    )  # a "matching" sidecar
    stem.with_suffix(".json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"pickle|not a readable safetensors"):
        load_model(stem)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["evil.pkl", "evil.pickle", "evil.bin", "evil.PT"])
def test_pickle_suffixes_are_refused_by_name(tmp_path: Path, name) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / name).write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError, match=r"pickle-based file .*never unpickles"):
        load_model(tmp_path / name)
    assert not marker.exists()


def test_torch_save_zip_disguised_as_safetensors(saved, tmp_path: Path) -> None:
    _, stem, _ = saved
    marker = tmp_path / "pwned"
    for suffix in (".safetensors", ".state"):
        torch.save({"x": _Evil(marker)}, stem.with_suffix(suffix))  # torch's zip container
    with pytest.raises(CheckpointError, match="refused"):
        load_model(stem)
    with pytest.raises(CheckpointError, match="refused"):
        load_train_state(stem.with_suffix(".json"), torch.optim.SGD(_model().parameters(), lr=0.1))
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0, 4, 8, 64, 0.5, -1])
def test_truncated_safetensors_at_every_stage(saved, keep) -> None:
    _, stem, _ = saved
    for suffix in (".safetensors", ".state"):
        f = stem.with_suffix(suffix)
        data = f.read_bytes()
        cut = int(len(data) * keep) if isinstance(keep, float) else keep if keep >= 0 else len(data) + keep
        f.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match=r"last\.safetensors is not a readable safetensors file"):
        load_model(stem)
    with pytest.raises(CheckpointError, match=r"last\.state is not a readable safetensors file"):
        load_train_state(stem, torch.optim.SGD(_model().parameters(), lr=0.1))


@pytest.mark.parametrize(
    ("other", "needle"),
    [
        ({"width": 0.125}, r"has shape .* but the architecture expects"),  # a wider backbone's weights
        (
            {"name": "clever"},
            r"has shape|is missing from the checkpoint|unexpected tensors",
        ),  # another method
        ({"backbone": "resnet18", "image_size": 64}, r"has shape|missing|unexpected"),  # ImageNet-style stem
    ],
)
def test_weights_of_another_architecture_with_a_matching_sha(saved, tmp_path: Path, other, needle) -> None:
    """The real case: a genuine safetensors file of another model, sidecar sha256 updated to match it."""

    _, stem, _ = saved
    kw = {"name": "simclr", "width": 0.0625, "image_size": 16, **other}
    torch.manual_seed(0)
    foreign = build_method(kw.pop("name"), **kw)
    src = save_checkpoint(tmp_path / "foreign" / "m", foreign, config={}, epoch=0, step=0)
    w = stem.with_suffix(".safetensors")
    w.write_bytes(src.with_suffix(".safetensors").read_bytes())
    info = _sidecar(stem)
    info["weights"]["sha256"] = sha256_file(w)
    stem.with_suffix(".json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=needle) as e:
        load_model(stem)
    assert "last.safetensors" in str(e.value)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda i: "{not json", r"cannot read checkpoint sidecar"),
        (lambda i: [1, 2], r"not an EquiLab checkpoint sidecar"),
        (lambda i: {**i, "format": "equilab-checkpoint/2"}, r"not an EquiLab checkpoint sidecar"),
        (lambda i: {**i, "weights": None}, r"'weights' entry None is malformed"),
        (lambda i: {**i, "weights": {"sha256": "0"}}, r"'weights' entry .* is malformed"),
        (
            lambda i: {**i, "weights": {**i["weights"], "file": "../../etc/passwd"}},
            r"'weights' entry .*malformed",
        ),
        (
            lambda i: {**i, "weights": {**i["weights"], "file": "gone.safetensors"}},
            r"gone\.safetensors is missing",
        ),
        (lambda i: {**i, "weights": {**i["weights"], "sha256": "0" * 64}}, r"sha256 does not match"),
        (lambda i: {k: v for k, v in i.items() if k != "build"}, r"cannot rebuild the model"),
        (lambda i: {**i, "build": ["simclr"]}, r"cannot rebuild the model"),
        (lambda i: {**i, "build": {**i["build"], "width": "wide"}}, r"cannot rebuild the model.*width"),
    ],
)
def test_wrong_json_sidecars(saved, mutate, needle) -> None:
    _, stem, _ = saved
    out = mutate(_sidecar(stem))
    stem.with_suffix(".json").write_text(out if isinstance(out, str) else json.dumps(out))
    with pytest.raises(CheckpointError, match=needle) as e:
        load_model(stem)
    assert "checkpoints/" in str(e.value)  # names the sidecar or the file it points to


@pytest.mark.parametrize(
    ("state", "needle"),
    [
        ({"file": 3, "sha256": "x"}, r"'state' entry .* is malformed"),
        ({"file": "last.state"}, r"'state' entry .* is malformed"),
        ("last.state", r"'state' entry .* is malformed"),
    ],
)
def test_wrong_resume_state_entries(saved, state, needle) -> None:
    model, stem, _ = saved
    info = _sidecar(stem)
    info["state"] = state
    stem.with_suffix(".json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=needle):
        load_train_state(stem, torch.optim.SGD(model.parameters(), lr=0.1))


def test_sidecar_records_the_train_data_spec_and_old_sidecars_fall_back_to_the_config(tmp_path: Path) -> None:

    data = {"dataset": "shapes", "root": None, "options": {"seed": 3, "size": 50}, "train_subset": 0}
    side = save_checkpoint(tmp_path / "ck", _model(), config={"data": data}, epoch=0, step=0)
    info = read_info(side)
    want = DataSpec("shapes", "train", None, {"seed": 3, "size": 50})
    assert info["data"] == want.to_dict() and data_spec(info) == want
    old = {k: v for k, v in info.items() if k != "data"}  # written before the spec existed: config.data
    assert data_spec(old) == want
    assert data_spec({"config": {}}) is None and "data" not in read_info(
        save_checkpoint(tmp_path / "bare", _model(), config={}, epoch=0, step=0)
    )
    with pytest.raises(CheckpointError, match="malformed data spec"):
        data_spec({**info, "data": {"split": "train"}})


@pytest.mark.parametrize("name", ["shapes-equimod", "cifar10-simclr"])
def test_shipped_checkpoints_give_their_default_variant(name: str) -> None:

    info = read_info(Path(__file__).resolve().parents[3] / "checkpoints" / f"{name}.json")
    assert "data" not in info  # shipped in the format before the spec; not regenerated
    assert data_spec(info) == DataSpec(name.split("-")[0], "train")
