"""AppTest: the augmentation lab on a fixture store: identity, a slider change, seeded views, sweep, hand-off."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from engine.lab.image import SliderValues, lab_views
from engine.store.format import open_store
from engine.train.checkpoint import load_model


def array(v) -> np.ndarray:
    """A Plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64)}."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, dtype=np.float64)


def metrics(at) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in at.metric:
        out.setdefault(m.label, []).append(m.value)
    return out


def test_identity_view_does_not_move_and_hue_shift_matches_the_engine(open_app, app_env):
    at = open_app("lab", idx="5")
    assert at.number_input(key="lab_idx").value == 5
    m = metrics(at)
    assert m["|Δ|"] == ["0.0000"] and m["invariance cos"] == ["1.000"]
    assert m["cos(Δ, Δ̂)"] == ["—"]  # an untrained `none` model has no predictor

    at.slider(key="lab_hue").set_value(0.3).run()
    assert not at.exception
    label = at.sidebar.selectbox(key="sb_model").value
    model, _ = load_model(Path(app_env["EQUILAB_CHECKPOINTS"]) / f"{label}.safetensors")
    store = open_store(Path(app_env["EQUILAB_STORES"]) / f"{label}-shapes-test")
    from engine.data import load_dataset

    image = np.array(load_dataset("shapes", "test", size=store.n).images[5])
    want = lab_views(model, image, [SliderValues(hue=0.3)], "backbone").metrics[0]
    assert metrics(at)["|Δ|"] == [f"{want.norm:.4f}"] and want.norm > 0
    assert metrics(at)["invariance cos"] == [f"{want.invariance:.3f}"]


def test_seeded_random_views_arrows_and_sweep(open_app):
    at = open_app("lab")
    at.radio(key="lab_mode").set_value("Sample random (seeded)").run()
    at.slider(key="lab_nviews").set_value(3).run()
    assert len(metrics(at)["|Δ|"]) == 3
    first = metrics(at)["|Δ|"]
    at.run()
    assert metrics(at)["|Δ|"] == first  # same seed, same views
    arrows = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(arrows["layout"]["annotations"]) == 3  # one actual arrow per view (no predictor)
    at.button(key="lab_sweep_run").click().run()
    assert not at.exception
    sweep = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert (
        len(
            sweep["data"][0]["x"]["bdata"]
            if isinstance(sweep["data"][0]["x"], dict)
            else sweep["data"][0]["x"]
        )
        > 0
    )


def test_lab_view_is_a_retrieval_query(open_app):
    at = open_app("lab")
    at.slider(key="lab_crop").set_value(0.5).run()
    at.switch_page("views/retrieval.py").run()
    at.radio(key="ret_source").set_value("Lab view").run()
    assert not at.exception and not at.info
    assert at.metric[0].label == "Query latency"


def test_a_saved_posthoc_predictor_fills_the_prediction_metrics(store_roots, tmp_path, monkeypatch):
    import shutil

    from streamlit.testing.v1 import AppTest

    from engine.eval.displacement import fit_posthoc, save_predictor

    for k, v in store_roots.items():
        shutil.copytree(v, tmp_path / k)
        monkeypatch.setenv(k, str(tmp_path / k))
    rng = np.random.default_rng(0)
    for store in (tmp_path / "EQUILAB_STORES").iterdir():
        z0 = np.asarray(open_store(store).embeddings("backbone"))[:80]
        p = rng.normal(size=(80, 15))
        zt = z0 + 0.01 * p[:, :1] + 0.001 * rng.normal(size=z0.shape)
        save_predictor(fit_posthoc(z0, zt, p, "backbone"), store)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app" / "main.py"), default_timeout=120)
    at.run()
    at.slider(key="lab_brightness").set_value(1.5).run()
    assert not at.exception
    assert any("predictor: **post-hoc**" in c.value for c in at.caption)
    m = metrics(at)
    assert m["cos(Δ, Δ̂)"][0] != "—" and -1.0 <= float(m["cos(Δ, Δ̂)"][0]) <= 1.0
    assert float(m["relative error"][0]) >= 0.0
