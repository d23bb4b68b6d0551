"""AppTest: the Training and About pages, the router, and path restriction (no engine store needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import plotly.io
import pytest
from streamlit.testing.v1 import AppTest

from engine.eval.robustness import PERTURBATION_LABELS
from engine.lab.studies import findings

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    out = {}
    for kind, env in (
        ("checkpoints", "EQUILAB_CHECKPOINTS"),
        ("runs", "EQUILAB_RUNS"),
        ("stores", "EQUILAB_STORES"),
    ):
        out[kind] = tmp_path / kind
        out[kind].mkdir()
        monkeypatch.setenv(env, str(out[kind]))
    return out


def write_run(d: Path, n: int, lr: float) -> None:
    d.mkdir(parents=True)
    lines = [json.dumps({"step": i, "loss": 5.0 - i, "lr": lr, "knn/top1": 0.1 * i}) for i in range(n)]
    (d / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 99, "loss"')  # half-written last line


def app_on(page: str) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    return at.switch_page(f"views/{page}.py").run()


def test_training_page_plots_runs_and_overlays(roots):
    write_run(roots["runs"] / "a", 4, 0.1)
    write_run(roots["runs"] / "b", 3, 0.2)
    at = app_on("training")
    assert not at.exception
    assert sorted(at.multiselect[0].options) == ["a", "b"]
    at.multiselect[0].set_value(["a", "b"]).run()
    charts = at.get("plotly_chart")
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts]
    assert titles == ["loss", "lr", "knn / accuracy"]
    loss = json.loads(charts[0].proto.spec)
    assert [t["name"] for t in loss["data"]] == ["a · loss", "b · loss"]
    last = at.dataframe[0].value
    assert last.loc["a", "loss"] == 2.0 and last.loc["b", "step"] == 2.0  # half line skipped


def test_training_page_draws_ln_k_beside_a_head_loss_and_names_a_head_sitting_there(roots):
    d = roots["runs"] / "essl-gray"
    d.mkdir()
    lines = []
    for epoch, head in enumerate((0.5, 0.6931, 0.6932), start=1):
        lines += [
            {"step": 3 * epoch + i, "epoch": epoch, "loss": 5.0, "loss/grayscale": head} for i in range(3)
        ]
        lines.append({"epoch": epoch, "step": 3 * epoch + 3, "loss_epoch": 5.0})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    write_run(roots["runs"] / "simclr", 3, 0.1)
    at = app_on("training")
    at.multiselect[0].set_value(["essl-gray", "simclr"]).run()
    assert not at.exception
    (warning,) = [w.value for w in at.main.warning]
    assert (
        warning.startswith("essl-gray: loss/grayscale has stayed at ln 2 = 0.693 or above")
        and "from epoch 2 to epoch 3" in warning
        and "no better than a uniform guess" in warning
    )
    loss = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert loss["layout"]["title"]["text"] == "loss"
    (line,) = loss["layout"]["shapes"]
    assert line["y0"] == line["y1"] == pytest.approx(0.693147, abs=1e-6)
    assert "uniform guess" in loss["layout"]["annotations"][0]["text"]
    at.multiselect[0].set_value(["simclr"]).run()
    assert not at.main.warning and "shapes" not in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]


def test_a_run_with_one_record_is_drawn_as_a_point(roots):
    write_run(roots["runs"] / "one", 1, 0.1)
    at = app_on("training")
    loss = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [(t["name"], t["mode"]) for t in loss["data"]] == [("one · loss", "markers")]


def test_training_page_refuses_paths_outside_the_roots(roots, tmp_path):
    outside = tmp_path / "elsewhere"
    write_run(outside, 2, 0.1)
    write_run(roots["runs"] / "inside", 2, 0.1)
    at = app_on("training")
    for typed in (str(outside), "../elsewhere", "/etc"):
        at.text_input[0].input(typed).run()
        assert at.error and "allowed roots" in at.error[0].value, typed
    at.text_input[0].input("inside").run()
    assert not at.error and "inside" in at.multiselect[0].options


def test_training_page_without_runs_says_how_to_start_one(roots):
    at = app_on("training")
    assert "No runs" in at.info[0].value
    assert "engine train" in at.code[0].value


def test_about_example_button_switches_page_with_url_state(roots):
    at = app_on("about")
    assert at.title[0].value == "About EquiLab"
    assert len(at.button) == 5  # one per method, and EquiMod's colour example
    at.button(key="example_SimCLR").click().run()
    assert not at.exception
    assert at.query_params["sweep"] == "hue shift"
    assert at.session_state["example"]["sweep"] == "hue shift"
    assert at.title[0].value == "Augmentation lab"
    at = app_on("about")
    at.button(key="example_EquiMod_2").click().run()
    assert not at.exception and at.title[0].value == "Augmentation lab"
    ex = at.session_state["example"]
    assert (ex["sweep"], ex["grayscale"], ex["space"]) == ("grayscale", "1", "backbone")


def test_about_defines_every_measure_with_its_baseline_and_claims_what_the_numbers_show(roots):
    at = app_on("about")
    text = " ".join(m.value for m in at.markdown)
    for name in (
        "relative invariance",
        "centred cosine",
        "cos(Δ, Δ̂)",
        "gain",
        "R²(Δ)",
        "not encoded",
        "linear CKA",
        "head loss at ln k",
    ):
        assert f"**{name}" in text, name
    assert "baseline" in text and "between" in text
    captions = [b.label for b in at.button]
    assert not any("keeps rotation" in c for c in captions)  # chance on shapes: the old claim does not hold
    assert any("E-SSL on shapes" in c and "no more" in c for c in captions)


def test_sidebar_without_checkpoints_shows_the_training_command(roots):
    at = AppTest.from_file(MAIN, default_timeout=120).run()
    assert "No checkpoints" in at.sidebar.warning[0].value
    assert "engine train" in at.sidebar.code[0].value
    assert at.sidebar.selectbox(key="sb_ds").value == "shapes"


def test_live_refresh_defaults_on_only_for_a_run_being_written(roots):

    write_run(roots["runs"] / "old", 3, 0.1)
    old = roots["runs"] / "old" / "metrics.jsonl"
    os.utime(old, (old.stat().st_atime, old.stat().st_mtime - 3600))
    at = app_on("training")
    assert at.toggle(key="train_live").value is False
    write_run(roots["runs"] / "fresh", 3, 0.1)  # newest first: becomes the default selection
    at = app_on("training")
    assert at.multiselect(key="train_runs").value == ["fresh"]
    assert at.toggle(key="train_live").value is True


def test_about_draws_the_study_summaries_as_interactive_charts(plotly_array, roots):
    summary = Path(MAIN).parents[1] / "docs" / "study-shapes" / "summary.json"
    assert summary.is_file()  # committed with docs/results.md
    at = app_on("about")
    assert not at.exception
    assert at.header[0].value == "What the methods learn: the studies"
    assert at.selectbox(key="about_study").value == "shapes"
    results = (Path(MAIN).parents[1] / "docs" / "results.md").read_text()
    shown = " ".join(m.value for m in at.markdown)
    assert findings(results, "shapes") in shown  # the write-up's own findings, not a copy
    at.selectbox(key="about_study").set_value("colour").run()
    shown = " ".join(m.value for m in at.markdown)
    assert findings(results, "colour") in shown and findings(results, "shapes") not in shown
    at.selectbox(key="about_study").set_value("shapes").run()
    charts = [plotly.io.from_json(c.proto.spec) for c in at.get("plotly_chart")]
    bars = [c for c in charts if "class" in c.layout.title.text]
    assert bars and {t.name for t in bars[0].data} >= {"simclr", "none"}  # one series per arm
    knn = next(t for t in bars[0].data if t.name == "simclr")
    doc = json.loads(summary.read_text())["metrics"]["simclr"]["backbone/knn_acc"]
    assert (
        abs(plotly_array(knn.y)[0] - doc["mean"]) < 1e-9
        and abs(plotly_array(knn.error_y.array)[0] - doc["std"]) < 1e-9
    )
    rotation = next(c for c in charts if c.layout.title.text.startswith("Rotation prediction"))
    essl = {t.name: t.marker.color for c in (bars[0], rotation) for t in c.data if t.name == "essl"}
    colour_of = {t.name: t.marker.color for t in bars[0].data}
    assert [t.marker.color for t in rotation.data if t.name == "essl"] == [colour_of["essl"]], essl
    assert len(set(colour_of.values())) == len(
        colour_of
    )  # an arm keeps its colour across charts; arms differ
    assert not at.info  # the "make the summaries" hint only shows when they are missing
    at.selectbox(key="about_study").set_value(
        "invariance_vs_equivariance"
    ).run()  # 17 arms: more than D3's 10
    wide = [plotly.io.from_json(c.proto.spec) for c in at.get("plotly_chart")]
    big = next(c for c in wide if "class" in c.layout.title.text)
    assert len(big.data) == 17 and len({t.marker.color for t in big.data}) == 17  # no two arms share a colour
    assert big.layout.height >= 120 + 20 * 17  # the legend names all 17 arms without a scroll bar
    assert "online linear (trained alongside)" in set(big.data[0].x)  # class measures together, chance 0.10
    rot = next(c for c in wide if c.layout.title.text.startswith("Rotation prediction"))
    bars_at = {x for t in rot.data for x in t.x}
    assert bars_at == {"rotation acc"}  # its chance line (0.25) holds for every bar
    assert list(rot.layout.yaxis.range) == [0, 1]  # on the accuracy's whole scale
    # read between chance and the identifiability ceiling of upright shapes (docs/results.md §5's 0.632)
    assert {(s.line.dash, round(s.y0, 4)) for s in rot.layout.shapes} == {("dash", 0.25), ("dot", 0.6325)}
    assert "ceiling 0.632" in {a.text for a in rot.layout.annotations}
    # at uniform angles (shapes) no rotation can be told apart: the ceiling is chance, and the chart says so
    assert any(a.text.startswith("ceiling = chance") for a in rotation.layout.annotations)
    at.selectbox(key="about_study").set_value("cifar10_cpu").run()  # real images: no ceiling is computable
    cifar = [plotly.io.from_json(c.proto.spec) for c in at.get("plotly_chart")]
    rot = next(c for c in cifar if c.layout.title.text.startswith("Rotation prediction"))
    assert [(s.line.dash, s.y0) for s in rot.layout.shapes] == [("dash", 0.25)]
    at.selectbox(key="about_study").set_value("shapes").run()
    robust = next(c for c in charts if c.layout.title.text.startswith("Robustness"))
    assert list(robust.data[0].x) == list(PERTURBATION_LABELS.values())  # "rotation ±90°", not "rot90"

    # The colour_full finding (EquiMod is not invariant to grayscale) is a chart read against "another image" = 0.
    at.selectbox(key="about_study").set_value("colour_full").run()
    assert findings(results, "colour_full") in " ".join(m.value for m in at.markdown)
    charts = [plotly.io.from_json(c.proto.spec) for c in at.get("plotly_chart")]
    inv = next(c for c in charts if c.layout.title.text.startswith("Relative invariance of the backbone"))
    assert [(s.y0, s.line.dash) for s in inv.layout.shapes] == [(0.0, "dash")]
    equimod = next(t for t in inv.data if t.name == "equimod")
    doc = json.loads((summary.parents[1] / "study-colour_full" / "summary.json").read_text())
    gray = doc["metrics"]["equimod"]["backbone/sweep/grayscale@1/invariance/relative"]["mean"]
    assert abs(plotly_array(equimod.y)[list(equimod.x).index("grayscale")] - gray) < 1e-9

    # transforms carries its essl-* and simclr arms from invariance_vs_equivariance: the caption says so
    at.selectbox(key="about_study").set_value("transforms").run()
    captions = " ".join(c.value for c in at.caption)
    assert "carried from the `invariance_vs_equivariance` report" in captions, captions
    assert "`essl-rotation` (`eq-rotation` there)" in captions, captions

    # head_vs_lr has no untrained arm: the caption names the baselines it does have, not a `none` arm
    at.selectbox(key="about_study").set_value("head_vs_lr").run()
    captions = " ".join(c.value for c in at.caption)
    assert "each arm is read against `simclr` and `simclr-lr2`" in captions
    assert (
        "docs/study-head_vs_lr/summary.json" in captions and "the `none` arm is the untrained" not in captions
    )
    assert "SimCLR at E-SSL's doubled lr 0.890 ± 0.046 (head_vs_lr, seeds [0, 1, 2])" in captions

    # §6b, the CIFAR-10 counterpart of the robustness study: its own findings and its robustness chart
    at.selectbox(key="about_study").set_value("clever_robustness_cifar10").run()
    assert not at.exception
    assert findings(results, "clever_robustness_cifar10") in " ".join(m.value for m in at.markdown)
    charts = [plotly.io.from_json(c.proto.spec) for c in at.get("plotly_chart")]
    assert any(c.layout.title.text.startswith("Robustness") for c in charts)

    # §7b, the GPU session's study: scored by the training monitors only, so one chart with both monitors, the
    # findings, and a caption that says E-SSL's doubled lr has no control here
    at.selectbox(key="about_study").set_value("paper_cifar10").run()
    assert not at.exception
    assert findings(results, "paper_cifar10") in " ".join(m.value for m in at.markdown)
    assert "(and no `simclr-lr2`: E-SSL's lead is not separated from its doubled lr)" in " ".join(
        c.value for c in at.caption
    )
    charts = [plotly.io.from_json(c.proto.spec) for c in at.get("plotly_chart")]
    assert [c.layout.title.text for c in charts] == ["What the backbone knows of the classes"]
    essl = next(t for t in charts[0].data if t.name == "essl")
    assert sorted(essl.x) == ["kNN monitor (trained alongside)", "online linear (trained alongside)"]
    doc = json.loads((summary.parents[1] / "study-paper_cifar10" / "summary.json").read_text())
    knn = doc["metrics"]["essl"]["knn_monitor/acc"]["mean"]
    assert abs(plotly_array(essl.y)[list(essl.x).index("kNN monitor (trained alongside)")] - knn) < 1e-9


def test_training_page_gives_each_unit_its_chart_and_hides_empty_columns(roots):
    d = roots["runs"] / "u"
    d.mkdir()
    rows = [
        {"step": i, "loss": 1.23456 / (i + 1), "grad_norm": 100.0 + i, "acc": 0.5, "empty": None}
        for i in range(3)
    ]
    rows.append({"step": 3, "knn/top1": 0.123456})  # logged once: kept, the last value of each column shown
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 4, "bad": NaN}\n')
    at = app_on("training")
    assert not at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert [s["layout"]["title"]["text"] for s in specs] == ["loss", "knn / accuracy", "grad_norm"]
    # legends below the plots, clear of the toolbar
    assert all(s["layout"]["legend"]["orientation"] == "h" for s in specs)
    last = at.dataframe[0].value
    assert "empty" not in last.columns and "bad" not in last.columns
    assert (
        last.loc["u", "loss"] == 0.412 and last.loc["u", "knn/top1"] == 0.123 and last.loc["u", "step"] == 4
    )


def test_about_answers_which_transformation_to_predict_with_ceilings(roots):
    at = app_on("about")
    assert not at.exception
    assert "Which transformation should an equivariant task predict?" in [h.value for h in at.header]
    table = next(d.value for d in at.dataframe if "ceiling shapes_upright" in d.value.columns)
    rot = table.set_index("task").loc["rotation"]
    assert rot["chance"] == 0.25 and abs(rot["ceiling shapes_upright"] - 0.632) < 1e-3
    assert not any(
        (table[c].astype(str) == "—").all() for c in table.columns
    )  # unmeasured columns are hidden


def test_about_reads_the_cifar_transforms_against_simclr_and_the_lr_control(roots):
    """The transforms study on CIFAR-10 (docs/results.md §5): a row per measured task, no ceiling column, each
    head against SimCLR and against cifar10_cpu's doubled-lr control, the baselines named with their seeds."""
    at = app_on("about")
    assert not at.exception
    assert "The same tasks on CIFAR-10: which one teaches the classes?" in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "E-SSL head − SimCLR" in d.value.columns).set_index("task")
    assert "rotation" in table.index and not any("ceiling" in c for c in table.columns)
    docs = Path(MAIN).parents[1] / "docs"
    summary = json.loads((docs / "study-transforms_cifar10" / "summary.json").read_text())
    lin = summary["metrics"]["essl-rotation"]["backbone/linear_acc"]
    assert table.loc["rotation", "linear (E-SSL head)"] == f"{lin['mean']:.3f} ± {lin['std']:.3f}"
    assert table.loc["rotation", "E-SSL head − SimCLR at its lr"].endswith("(noise)")
    caption = next(c.value for c in at.caption if "cifar10_cpu's `simclr-lr2`" in c.value)
    assert "SimCLR at E-SSL's doubled lr 0.475 ± 0.005 (cifar10_cpu, seeds [0, 1, 2])" in caption


def test_about_shows_no_blank_ceiling_for_real_images(roots):
    """CIFAR-10 has no identifiability ceiling: the explaining-away table on it leaves the column out and says so."""
    at = app_on("about")
    assert not at.exception
    heads = [s.value for s in at.subheader]
    title = "Explaining away on CIFAR-10: does rotation prediction move with the class information?"
    assert title in heads
    tables = [d.value for d in at.dataframe if "rotation acc" in d.value.columns]
    cifar = next(t for t in tables if "ceiling" not in t.columns)
    assert list(cifar["arm"]) == [
        "rotation alone",
        "+ class cross-entropy",
        "+ KL(uniform ‖ classifier): class made unreadable, bounded",
    ]
    assert any("no computable identifiability ceiling" in c.value for c in at.caption)
    assert all(not (t[c].astype(str) == "—").all() for t in tables for c in t.columns)


def test_about_names_the_arm_whose_training_diverged(roots):
    at = app_on("about")
    assert not at.exception
    summary = json.loads(
        (Path(MAIN).parents[1] / "docs" / "study-explaining_away" / "summary.json").read_text()
    )
    failed = summary["failed"]  # docs/results.md §5: the authors' unbounded eliminate arm diverged
    assert [(f["arm"], f["seed"]) for f in failed] == [("rotation-eliminate", s) for s in summary["seeds"]]
    notes = [c.value for c in at.caption if c.value.startswith("Not evaluated, training diverged")]
    assert len(notes) == 1  # one note under the table, naming every seed that diverged
    assert all(f"rotation-eliminate (seed {s}): non-finite loss" in notes[0] for s in summary["seeds"])
