"""AppTest: the lab's pretext-head prediction and the compare page's robustness, on the shipped shapes-essl and
shapes-none checkpoints with small stores (160 shapes test images)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from app.ui import sig3
from engine.core.io import sha256_file
from engine.data import load_dataset
from engine.eval.robustness import PERTURBATION_LABELS, PERTURBATIONS
from engine.methods.protocol import LOGIT_KEYS
from engine.store.format import open_store
from engine.train.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location(
    "equilab_fixture_store", ROOT / "tests" / "app" / "fixture_store.py"
)
FIXTURE = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(FIXTURE)  # the shared store writer (tests/app/fixture_store.py)
N = 160
MODELS = ("shapes-essl", "shapes-none")


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, str]:
    """checkpoints/ with copies of the shipped checkpoints, stores/ with their stores on N shapes test images."""
    root = tmp_path_factory.mktemp("robust-roots")
    dirs = {k: root / k for k in ("checkpoints", "runs", "stores")}
    for d in dirs.values():
        d.mkdir()
    ds = load_dataset("shapes", "test", size=N)
    images = np.array(ds.images)
    for label in MODELS:
        for ext in (".safetensors", ".json"):
            shutil.copy(ROOT / "checkpoints" / f"{label}{ext}", dirs["checkpoints"] / f"{label}{ext}")
        weights = dirs["checkpoints"] / f"{label}.safetensors"
        model, info = load_model(weights)
        with torch.no_grad():
            out = model.embed(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)
        source = {
            "checkpoint": str(weights),
            "checkpoint_sha256": sha256_file(weights),
            "method": info["build"]["name"],
            "dataset": "shapes",
            "split": "test",
            "dataset_options": {"size": N},
        }
        embeddings = {k: v.float().numpy() for k, v in out.items() if k not in LOGIT_KEYS}
        FIXTURE.write_item_store(dirs, label, embeddings, ds, images, source)
    return FIXTURE.root_env(dirs)


@pytest.fixture
def env(roots, monkeypatch):
    for k, v in roots.items():
        monkeypatch.setenv(k, v)
    return roots


def _bars(at, key: str) -> list[dict]:
    chart = next(c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id)
    return [t for t in json.loads(chart.proto.spec)["data"] if t.get("type") == "bar"]


def test_lab_shows_the_rotation_heads_probabilities_and_the_views_label(plotly_array, env, page_runner):
    at = page_runner("lab", model="shapes-essl", idx="3")
    assert any("Pretext head" in s.value for s in at.subheader)
    at.slider(key="lab_rotation").set_value(100.0).run()
    assert not at.exception, [e.message for e in at.exception]
    (bar,) = _bars(at, "lab_pretext_0")
    assert list(bar["x"]) == ["0°", "90°", "180°", "270°"]
    assert plotly_array(bar["y"]).sum() == pytest.approx(1.0, abs=1e-6)
    text = " ".join(c.value for c in at.caption)
    assert "the view is **90°**, rounded from 100°" in text
    assert ": right" in text or ": wrong" in text


def test_lab_shows_no_pretext_section_for_a_model_without_a_head(env, page_runner):
    at = page_runner("lab", model="shapes-none", idx="3")
    assert not any("Pretext head" in s.value for s in at.subheader)


def test_compare_reads_eval_json_and_computes_the_missing_model(env, page_runner):
    store_a = Path(env["EQUILAB_STORES"]) / "shapes-essl-shapes-test"
    stored = {name: 0.5 + 0.01 * i for i, name in enumerate(PERTURBATIONS)}
    rows = [{"evaluator": "robustness", "space": "backbone", "metric": f"robust_acc/{k}", "value": v}
            for k, v in stored.items()]  # fmt: skip
    (store_a / "eval.json").write_text(json.dumps({"results": rows}))
    try:
        at = page_runner("compare", model="shapes-essl", model_b="shapes-none", space="backbone")
        assert any("No robustness results for shapes-none" in i.value for i in at.info)
        at.button(key="cmp_robust_go").click().run()
        assert not at.exception, [e.message for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        assert "cmp_robust_go" not in [b.key for b in at.button]  # the slot is emptied once clicked
        df = at.dataframe[-1].value
        assert list(df["condition"]) == [PERTURBATION_LABELS[c] for c in PERTURBATIONS]
        assert list(df["shapes-essl"]) == [sig3(v) for v in stored.values()]
        computed = [float(v) for v in df["shapes-none"]]
        assert all(0.0 <= v <= 1.0 for v in computed)
        bars = _bars(at, "cmp_robust_chart")
        assert [b["name"] for b in bars] == list(MODELS)
        chart = next(c for c in at.get("plotly_chart") if "cmp_robust_chart" in c.proto.id)
        assert json.loads(chart.proto.spec)["layout"]["showlegend"] is not False
        how = next(
            c.value for c in at.caption if c.value.startswith("Measured with:") and "probe on" in c.value
        )
        # the fixture store is small: the page's probe takes half and scores the rest
        n = open_store(store_a).n
        assert "**shapes-essl**: eval.json (train → test)" in how
        assert (
            f"**shapes-none**: computed here: a probe on {n // 2} clean items, scored on {n - n // 2}" in how
        )
    finally:
        (store_a / "eval.json").unlink()
