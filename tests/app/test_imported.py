"""AppTest: "Add a model" imports a torchvision ResNet-18 state dict; the picker marks it imported; the lab and the
map run on it, the lab with the post-hoc prediction and the two model-free baselines."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torchvision
from streamlit.testing.v1 import AppTest

from engine.imports.convert import import_checkpoint
from engine.store.build import ensure_store
from engine.store.format import StoreOptions, open_store

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
N_ITEMS = 160  # a tiny shapes store, as tests/app/fixture_store.py


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty checkpoints/runs/stores and an imports folder holding a torchvision resnet18 state dict."""
    dirs = {k: tmp_path / k for k in ("checkpoints", "runs", "stores", "imports")}
    for d in dirs.values():
        d.mkdir()
    for kind in dirs:
        monkeypatch.setenv(f"EQUILAB_{kind.upper()}", str(dirs[kind]))
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    torch.save(net.state_dict(), dirs["imports"] / "my-resnet.pth")  # how torchvision users save a model
    (dirs["imports"] / "hostile.pt").write_bytes(b"\x80\x04cos\nsystem\n(S'touch pwned'\ntR.")
    return dirs


def _add_page() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    at.switch_page("views/add_model.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _import(at: AppTest, source: str, fmt: str, name: str, arch: str = "", size: int = 0) -> AppTest:
    at.selectbox(key="add_source").set_value(source).run()
    at.selectbox(key="add_format").set_value(fmt)
    at.text_input(key="add_arch").set_value(arch)
    at.text_input(key="add_name").set_value(name)
    at.number_input(key="add_size").set_value(size)
    at.button(key="add_import").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_import_panel_picker_lab_and_map(roots: dict[str, Path], tmp_path: Path) -> None:
    at = _add_page()
    assert set(at.selectbox(key="add_source").options) == {"imports/hostile.pt", "imports/my-resnet.pth"}

    # a file that needs full unpickling: one line, nothing written, nothing run
    _import(at, "imports/hostile.pt", "torchvision", "evil")
    assert len(at.error) == 1 and "unpickling" in at.error[0].value and "\n" not in at.error[0].value
    assert not list(roots["checkpoints"].iterdir()) and not (tmp_path / "pwned").exists()
    # a name that is not a plain file name
    _import(at, "imports/my-resnet.pth", "torchvision", "../escape")
    assert len(at.error) == 1 and "model name" in at.error[0].value
    assert not list(roots["checkpoints"].iterdir())

    _import(at, "imports/my-resnet.pth", "torchvision", "my-resnet", arch="resnet18", size=32)
    assert not at.error and "Imported" in at.success[0].value
    assert (roots["checkpoints"] / "my-resnet.safetensors").is_file()
    picker = at.sidebar.selectbox(key="sb_model")
    assert picker.value == "my-resnet" and "my-resnet (imported: torchvision)" in picker.options

    # a store on a tiny shapes subset, built by the engine's store builder (the app finds it by checkpoint sha)
    ckpt = roots["checkpoints"] / "my-resnet.safetensors"
    ensure_store(
        ckpt,
        "shapes",
        "test",
        store_root=roots["stores"],
        options=StoreOptions(umap=False),
        data_options={"size": N_ITEMS},
    )
    at.switch_page("views/lab.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.sidebar.selectbox(key="sb_model").value == "my-resnet"
    captions = " ".join(c.value for c in at.caption)
    assert "predictor: **post-hoc" in captions, (captions, [w.value for w in at.warning])
    labels = {m.label: m.value for m in at.metric}
    for label in ("cos(Δ, Δ̂)", "cos, mean-Δ guess", "cos, params-only"):
        assert label in labels
    at.slider(key="lab_hue").set_value(0.3).run()
    assert not at.exception, [e.message for e in at.exception]
    values = {m.label: m.value for m in at.metric}
    assert all(values[k] != "—" for k in ("cos(Δ, Δ̂)", "cos, mean-Δ guess", "cos, params-only")), values
    names = [t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]]
    assert {"actual Δ", "prediction Δ̂", "guess: mean Δ of the family/strength"} <= set(names), names

    at.switch_page("views/map.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_compare_imported_resnet_with_a_narrower_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compare across widths: an imported resnet18 (512-d backbone) beside the fixture's width-0.125 model (64-d);
    overlap@k compares neighbourhoods, so it is computed whatever the two embedding sizes."""
    spec = importlib.util.spec_from_file_location(
        "equilab_fixture_store", Path(__file__).parent / "fixture_store.py"
    )
    fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixture)
    env = fixture.build(tmp_path / "roots")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "my-resnet.pth")
    ckpts = Path(env["EQUILAB_CHECKPOINTS"])
    side = import_checkpoint(
        tmp_path / "my-resnet.pth", "torchvision", ckpts / "my-resnet", arch="resnet18", input_size=32
    )
    store = ensure_store(
        side,
        "shapes",
        "test",
        store_root=Path(env["EQUILAB_STORES"]),
        options=StoreOptions(umap=False),
        data_options={"size": fixture.N_ITEMS},
    )
    narrow = Path(env["EQUILAB_STORES"]) / "shapes-none-shapes-test"
    widths = [open_store(p).embeddings("backbone").shape[1] for p in (store, narrow)]
    assert widths[0] == 512 and widths[1] < 512, widths

    at = AppTest.from_file(MAIN, default_timeout=300)
    at.query_params["model"] = "my-resnet"
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.sidebar.selectbox(key="sb_model").value == "my-resnet"
    at.selectbox(key="cmp_b").set_value("shapes-none").run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    overlap = next(m for m in at.metric if m.label.startswith("Mean overlap@"))
    assert 0.0 <= float(overlap.value) <= 1.0
    assert f"would share {10 / (fixture.N_ITEMS - 1):.3f} (k / (N − 1)" in overlap.proto.help  # its baseline
