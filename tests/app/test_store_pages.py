"""AppTest: Map, Retrieval and Compare on fixture stores, uploads of bad images, and a damaged store."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.elements.lib import policies
from streamlit.testing.v1 import AppTest

from app.ui import CLASS_COLOURS, CYCLIC_SCALE, class_colour
from engine.augment import FAMILIES
from engine.data import load_dataset
from engine.eval.displacement import displace
from engine.lab.compare import overlap_at_k, probe_factors
from engine.store.format import open_store
from engine.train.checkpoint import load_model

N = 160


def spec(at, i: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[i].proto.spec)


def store_emb(env: dict[str, str], label: str, space: str = "backbone") -> np.ndarray:
    return np.asarray(open_store(Path(env["EQUILAB_STORES"]) / f"{label}-shapes-test").embeddings(space))


def test_map_draws_every_item_once_with_ids_in_customdata(plotly_array, open_app, app_env):
    at = open_app("map")
    assert any("Showing 160 of 160" in c.value for c in at.caption)
    fig = spec(at)
    assert fig["data"][0]["type"] == "scattergl"
    model = at.sidebar.selectbox(key="sb_model").value
    store = open_store(Path(app_env["EQUILAB_STORES"]) / f"{model}-shapes-test")
    assert [t["name"] for t in fig["data"]] == list(store.classes)  # one trace per class, coloured by label
    ids = np.concatenate([plotly_array(t["customdata"]) for t in fig["data"]])
    assert sorted(ids.tolist()) == list(range(N))  # global row ids, each once
    for t in fig["data"]:  # the x of each point is that id's coordinate
        xy = store.coords("backbone", "pca2")
        assert np.allclose(plotly_array(t["x"]), xy[plotly_array(t["customdata"]), 0], atol=1e-5)
        assert (store.labels[plotly_array(t["customdata"])] == store.classes.index(t["name"])).all()
    at.selectbox(key="map_colour").set_value("same label among 10-NN").run()
    assert not at.exception
    assert len(spec(at)["data"]) == 1 and spec(at)["data"][0]["marker"]["showscale"]
    agree = plotly_array(spec(at)["data"][0]["marker"]["color"])
    counts = np.bincount(store.labels)
    chance = (counts * (counts - 1)).sum() / (N * (N - 1))  # 10 random others share the label this often
    line = next(c.value for c in at.caption if "nearest neighbours" in c.value)
    assert f"mean {agree.mean():.3f}, against {chance:.3f}" in line, line


def test_map_item_from_url_and_neighbours(open_app):
    at = open_app("map", item="7")
    assert at.number_input(key="map_item").value == 7
    assert at.dataframe[-1].value.columns.tolist() == [7]
    at.number_input(key="map_item").set_value(12).run()
    assert at.query_params["item"] == "12"


def test_retrieval_label_matches_equal_a_brute_force_search(open_app, app_env):
    at = open_app("retrieval", q="3")
    model = at.sidebar.selectbox(key="sb_model").value
    emb = store_emb(app_env, model)
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    order = np.argsort(-(x @ x[3]), kind="stable")
    top = order[order != 3][:8]  # the query item itself is not its own neighbour
    labels = open_store(Path(app_env["EQUILAB_STORES"]) / f"{model}-shapes-test").labels
    want = int((labels[top] == labels[3]).sum())
    assert at.metric[0].label == "Query latency"
    assert at.caption[-1].value.startswith(f"{want} of 8 share the query's label (the query itself left out)")
    same = (labels == labels[3]).sum() - 1  # the other items of the query's class, among N - 1 others
    assert f"{8 * same / (len(labels) - 1):.1f} of 8 would, drawn at random" in at.caption[-1].value
    at.slider(key="ret_k").set_value(4).run()
    assert " of 4 share" in at.caption[-1].value


def png(mode: str, size=(20, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


BAD_UPLOADS = {
    "not-an-image.png": b"hello, this is text",
    "truncated.png": png("RGB")[:40],
    "empty.png": b"",
}


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_bad_uploads_get_a_clear_error_and_the_app_keeps_running(open_app, name):
    at = open_app("retrieval")
    at.radio(key="ret_source").set_value("Upload").run()
    at.file_uploader(key="ret_upload").set_value((name, BAD_UPLOADS[name], "image/png")).run()
    assert not at.exception
    assert at.error and f"Cannot use {name}" in at.error[0].value


def test_bomb_upload_is_refused(open_app):
    buf = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(buf, format="PNG")  # 144 Mpx of zeros: a few KB compressed
    at = open_app("retrieval")
    at.radio(key="ret_source").set_value("Upload").run()
    at.file_uploader(key="ret_upload").set_value(("bomb.png", buf.getvalue(), "image/png")).run()
    assert not at.exception
    assert at.error and "Cannot use bomb.png" in at.error[0].value


def test_compare_overlap_matches_engine_compare(open_app, app_env):
    at = open_app("compare")
    a = at.sidebar.selectbox(key="sb_model").value
    b = at.selectbox(key="cmp_b").value
    assert {a, b} == {"shapes-none", "shapes-none-b"}
    want = overlap_at_k(store_emb(app_env, a), store_emb(app_env, b), k=10)
    assert at.metric[0].value == f"{want.mean():.3f}"
    ranked = at.dataframe[0].value
    assert np.all(np.diff(ranked["overlap@10"].to_numpy()) >= 0)
    assert np.isclose(ranked["overlap@10"].iloc[0], want.min())
    assert len(at.get("plotly_chart")) == 2  # the two linked maps


def test_damaged_store_shows_the_problem_and_the_fixing_command(store_roots, tmp_path, monkeypatch):

    roots = copy_roots(store_roots, tmp_path, monkeypatch)
    for store in roots["EQUILAB_STORES"].iterdir():
        emb = store / "backbone.npy"
        emb.write_bytes(emb.read_bytes()[:-64])  # truncated file
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app" / "main.py"), default_timeout=120)
    at.run()
    at.switch_page("views/map.py").run()
    assert not at.exception
    assert "StoreError" in at.error[0].value and "truncated" in at.error[0].value
    assert "python -m engine embed" in at.code[0].value


def copy_roots(
    store_roots: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    roots = {k: tmp_path / Path(v).name for k, v in store_roots.items()}
    for k, v in store_roots.items():
        shutil.copytree(v, roots[k])
        monkeypatch.setenv(k, str(roots[k]))
    return roots


def test_compare_charts_the_factor_probes_of_both_models(plotly_array, store_roots, tmp_path, monkeypatch):

    roots = copy_roots(store_roots, tmp_path, monkeypatch)
    stores = sorted(roots["EQUILAB_STORES"].iterdir())
    r2 = {"shapes-none-shapes-test": (0.25, 0.5), "shapes-none-b-shapes-test": (0.75, 0.125)}
    for d in stores:
        hue, size = r2[d.name]
        rows = [
            {"evaluator": "factors", "space": "backbone", "metric": "r2_hue", "value": hue},
            {"evaluator": "factors", "space": "backbone", "metric": "r2_scale", "value": size},
            {"evaluator": "knn", "space": "backbone", "metric": "top1", "value": 0.9},
        ]
        (d / "eval.json").write_text(json.dumps({"results": rows}))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app" / "main.py"), default_timeout=120)
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception
    bars = {t["name"]: dict(zip(t["x"], plotly_array(t["y"]).tolist())) for t in spec(at, 2)["data"]}
    assert bars == {
        "shapes-none-b": {"hue": 0.75, "scale": 0.125},
        "shapes-none": {"hue": 0.25, "scale": 0.5},
    }
    how = next(c.value for c in at.caption if c.value.startswith("Measured with:"))
    assert how.count("eval.json (train → test)") == 2, how


def encoded(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° on display
    return encoded(Image.new("RGB", (30, 20), (200, 10, 10)), "JPEG", exif=exif)


GOOD_UPLOADS = {
    "rgba.png": lambda: encoded(Image.new("RGBA", (24, 24), (255, 0, 0, 128))),
    "palette.png": lambda: encoded(Image.new("P", (24, 24), 3)),
    "cmyk.jpg": lambda: encoded(Image.new("CMYK", (24, 24), (0, 255, 0, 0)), "JPEG"),
    "sixteen-bit.png": lambda: encoded(Image.new("I;16", (24, 24), 40000)),
    "one-pixel.png": lambda: encoded(Image.new("RGB", (1, 1), (0, 0, 255))),
    "exif-rotated.jpg": exif_rotated,
}


@pytest.mark.parametrize("name", sorted(GOOD_UPLOADS))
def test_unusual_but_valid_uploads_are_converted_not_refused(open_app, name):
    at = open_app("retrieval")
    at.radio(key="ret_source").set_value("Upload").run()
    at.file_uploader(key="ret_upload").set_value((name, GOOD_UPLOADS[name](), "image/png")).run()
    assert not at.exception
    assert not at.error, at.error[0].value


def test_damaged_checkpoint_shows_the_problem_and_a_command(store_roots, tmp_path, monkeypatch):

    roots = copy_roots(store_roots, tmp_path, monkeypatch)
    for w in roots["EQUILAB_CHECKPOINTS"].glob("*.safetensors"):
        w.write_bytes(w.read_bytes()[:100])
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app" / "main.py"), default_timeout=120)
    at.run()  # the lab loads the model
    assert not at.exception
    assert "CheckpointError" in at.error[0].value
    assert "python -m engine train" in at.code[0].value


def test_map_colours_by_the_displacement_of_an_augmentation_family(plotly_array, open_app, app_env):

    at = open_app("map")
    at.selectbox(key="map_colour").set_value("displacement |Δ|").run()
    at.selectbox(key="map_family").set_value("hue").run()
    at.slider(key="map_strength_hue").set_value(0.25).run()
    assert not at.exception
    trace = spec(at)["data"][0]
    model_label = at.sidebar.selectbox(key="sb_model").value
    model, _ = load_model(Path(app_env["EQUILAB_CHECKPOINTS"]) / f"{model_label}.safetensors")
    images = np.array(load_dataset("shapes", "test", size=N).images)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)  # every item under hue 0.25, embedded here
    params = FAMILIES["hue"].params(0.25, len(x), images.shape[1:3], model.image_size, "cpu")
    norm = displace(model, x, params, "backbone").norm
    ids = plotly_array(trace["customdata"])
    assert np.allclose(plotly_array(trace["marker"]["color"]), norm[ids], atol=1e-5)


def record_dataset(checkpoints: Path, label: str, dataset: str) -> None:
    """Make the sidecar of ``label`` say it was trained on ``dataset`` (config.data, as older sidecars do)."""
    side = checkpoints / f"{label}.json"
    info = json.loads(side.read_text())
    info["config"] = {"data": {"dataset": dataset}}
    side.write_text(json.dumps(info))


def test_compare_default_b_is_trained_on_the_same_dataset(store_roots, tmp_path, monkeypatch):
    """shapes-none-b would be the first other model; it says cifar10, so B is the other shapes model."""

    roots = copy_roots(store_roots, tmp_path, monkeypatch)
    ckpts = roots["EQUILAB_CHECKPOINTS"]
    for ext in ("safetensors", "json"):  # a third checkpoint, sorted last: the same weights as shapes-none
        shutil.copy(ckpts / f"shapes-none.{ext}", ckpts / f"zz-shapes.{ext}")
    record_dataset(ckpts, "shapes-none", "shapes")
    record_dataset(ckpts, "shapes-none-b", "cifar10")
    record_dataset(ckpts, "zz-shapes", "shapes")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app" / "main.py"), default_timeout=120)
    at.query_params["model"] = "shapes-none"
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="cmp_b").value == "zz-shapes"
    assert at.selectbox(key="cmp_b").options[-1] == "shapes-none-b"  # another dataset's model comes last
    at.selectbox(key="cmp_b").set_value("shapes-none-b").run()
    assert any("trained on cifar10, not shapes" in c.value for c in at.caption)


def test_one_space_model_and_dataset_shared_by_every_page(open_app):
    at = open_app("map")
    model = at.sidebar.selectbox(key="sb_model").value
    spaces = at.sidebar.selectbox(key="sb_space").options
    other = next(m for m in at.sidebar.selectbox(key="sb_model").options if m != model)
    at.sidebar.selectbox(key="sb_model").set_value(other).run()
    at.sidebar.selectbox(key="sb_space").set_value(spaces[-1]).run()
    for page in ("lab", "retrieval", "compare", "map"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, (page, [e.message for e in at.exception])
        assert at.sidebar.selectbox(key="sb_model").value == other, page
        assert at.sidebar.selectbox(key="sb_space").value == spaces[-1], page
        assert at.sidebar.selectbox(key="sb_ds").value == "shapes", page
        assert at.query_params["space"] == spaces[-1] and at.query_params["model"] == other, page


@pytest.mark.parametrize("example", ["SimCLR", "E-SSL", "EquiMod", "CLeVER"])
def test_about_examples_set_the_sidebar_without_a_session_state_warning(
    store_roots, tmp_path, monkeypatch, example
):
    """Streamlit logs "created with a default value but also had its value set via the Session State API" once
    per process; the flag is reset and the log recorded around one example click. The examples' checkpoints
    are copies of the fixture's, so the sidebar really switches model."""

    roots = copy_roots(store_roots, tmp_path, monkeypatch)
    ckpts = roots["EQUILAB_CHECKPOINTS"]
    for label in ("shapes-simclr", "shapes-essl", "shapes-equimod", "shapes-clever"):
        for ext in ("safetensors", "json"):
            shutil.copy(ckpts / f"shapes-none.{ext}", ckpts / f"{label}.{ext}")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app" / "main.py"), default_timeout=120)
    at.run()
    at.switch_page("views/about.py").run()
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger(policies.__name__)
    logger.addHandler(handler)
    policies._shown_default_value_warning = False
    try:
        at.button(key=f"example_{example}").click().run()
    finally:
        logger.removeHandler(handler)
    assert not at.exception, [e.message for e in at.exception]
    assert not [m for m in seen if "Session State API" in m], seen
    assert at.sidebar.selectbox(key="sb_model").value == f"shapes-{example.lower().replace('-', '')}"


def test_map_colours_classes_from_the_shared_palette_and_hue_cyclically(open_app):

    at = open_app("map")
    fig = spec(at)
    assert [t["marker"]["color"] for t in fig["data"]] == list(CLASS_COLOURS[: len(fig["data"])])
    assert (
        fig["layout"]["legend"]["orientation"] == "h" and fig["layout"]["legend"]["y"] < 0
    )  # under the plot
    at.selectbox(key="map_colour").set_value("hue").run()
    assert not at.exception
    marker = spec(at)["data"][0]["marker"]
    assert marker["colorbar"]["title"]["text"] == "hue"
    twilight = marker["colorscale"]
    assert twilight[0][1] == twilight[-1][1]  # a cyclic scale: both ends one colour
    assert CYCLIC_SCALE == "Twilight"


def test_compare_selection_in_one_map_dims_the_other_without_hiding_it(plotly_array, open_app):

    at = open_app("compare")
    a = spec(at, 0)
    assert [t["marker"]["color"] for t in a["data"]] == [class_colour(i) for i in range(len(a["data"]))]
    assert a["layout"]["showlegend"] and a["layout"]["legend"]["orientation"] == "h"
    picked = np.array([3, 5, 8], np.int64)
    at.session_state["cmp_sel"] = {"a": np.zeros(0, np.int64), "b": picked}
    at.run()
    assert not at.exception
    a = spec(at, 0)
    *classes, top = a["data"]
    assert top["name"] == "selected in the other map" and len(plotly_array(top["x"])) == 3
    assert "customdata" not in top  # the highlight is not a selectable set of ids
    assert all(t["marker"]["opacity"] == 0.2 for t in classes)  # dimmed, still drawn
    assert sum(len(plotly_array(t["customdata"])) for t in classes) == N
    assert all("opacity" not in t["marker"] or t["marker"]["opacity"] == 1 for t in spec(at, 1)["data"])


def test_compare_changed_most_table_is_ranked_with_ties_ordered(open_app, app_env):
    at = open_app("compare")
    a, b = at.sidebar.selectbox(key="sb_model").value, at.selectbox(key="cmp_b").value
    t = at.dataframe[0].value
    assert t["rank"].tolist() == list(range(1, len(t) + 1))
    keys = list(zip(t["overlap@10"], t["overlap@50"], t["id"]))
    assert keys == sorted(keys)  # lowest overlap first; ties by the wider overlap, then id
    wide = overlap_at_k(store_emb(app_env, a), store_emb(app_env, b), k=50)
    assert np.allclose(t["overlap@50"], [float(f"{v:.3g}") for v in wide[t["id"]]])


def test_compare_computes_factor_probes_from_the_page(plotly_array, open_app, app_env):

    at = open_app("compare")
    assert len(at.get("plotly_chart")) == 2  # no eval.json beside the fixture stores: no probe chart yet
    at.button(key="cmp_probe_go").click().run()
    assert not at.exception
    bars = {t["name"]: dict(zip(t["x"], plotly_array(t["y"]).tolist())) for t in spec(at, 2)["data"]}
    a = at.sidebar.selectbox(key="sb_model").value
    store = open_store(Path(app_env["EQUILAB_STORES"]) / f"{a}-shapes-test")
    want = probe_factors(np.asarray(store.embeddings("backbone")), store.meta)
    assert {"hue", "rotation"} <= set(bars[a]) and len(bars) == 2
    assert np.allclose([bars[a][r["factor"]] for r in want], [r["r2"] for r in want])
    how = next(c.value for c in at.caption if c.value.startswith("Measured with:"))
    assert how.count(f"computed here (half and half of {store.n} items)") == 2, how
    at.run()  # kept for the session: no second click needed
    assert len(at.get("plotly_chart")) == 3


def test_a_non_square_upload_in_the_lab_says_how_the_model_sees_it(open_app):
    at = open_app("lab")
    at.radio(key="lab_source").set_value("Upload").run()
    at.file_uploader(key="lab_upload").set_value(
        ("wide.png", encoded(Image.new("RGB", (60, 20))), "image/png")
    ).run()
    assert not at.exception and not at.error
    side = 32  # the fixture models' image size
    assert any(f"60×20 px, not square: the model sees the whole image stretched to {side}×{side}" in c.value
               for c in at.caption)  # fmt: skip


def test_an_unknown_space_in_the_url_is_named_not_silently_replaced(open_app):
    at = open_app("lab", space="bogus")  # the page the URL opens on (a later page reads the remembered space)
    assert not at.exception
    assert any("Ignored space='bogus' from the URL" in w.value for w in at.warning)
    assert at.sidebar.selectbox(key="sb_space").value != "bogus"
