"""About / teach: invariance vs equivariance, the four methods, and one-click examples on shapes."""

from __future__ import annotations

from pathlib import Path

import plotly.express as px
import streamlit as st

from app import cached, ui
from engine.eval.robustness import PERTURBATION_LABELS
from engine.lab.pretext_choice import (
    PRINCIPLES,
    backbones,
    explaining_away,
    real_task_baselines,
    real_task_table,
    task_baselines,
)
from engine.lab.studies import (
    baseline_note,
    carried_note,
    findings,
    measured_columns,
    rotation_ceiling,
    tidy,
)

# name -> (explanation, examples); an example is (caption, target page, URL/session settings). Each example opens a
# state that shows what its caption says, on the dataset where it holds: the augmentation is applied (family
# name -> strength) and the sweep is run. The numbers quoted come from `python -m engine eval` on the shapes test
# split with the shipped checkpoints (docs/shipped-shapes/<model>/eval.json, relative invariance as in
# docs/measures.md; tests/infra/test_docs_numbers.py checks each against those files); the lab shows one image,
# which varies around them.
Example = tuple[str, str, dict[str, str]]
METHODS: dict[str, tuple[str, tuple[Example, ...]]] = {
    "SimCLR": (
        "Contrastive instance discrimination: two random views of an image are pulled together and pushed away "
        "from the other images of the batch (NT-Xent). It is trained to be **invariant** to every augmentation "
        "it uses. On shapes, whose recipe jitters hue over the whole circle, that erases hue from the projector "
        "embedding; with weak hue jitter it keeps colour (results §8).",
        (
            (
                "SimCLR erases hue: a hue shift leaves its embedding where it was (relative invariance 0.989 in "
                "the projector at a +0.25 hue shift; 0.895 for the untrained network's backbone), all along the "
                "hue sweep.",
                "lab",
                {
                    "model": "shapes-simclr",
                    "dataset": "shapes",
                    "space": "projector",
                    "sweep": "hue shift",
                    "hue": "0.25",
                },
            ),
        ),
    ),
    "E-SSL": (
        "SimCLR plus a 4-way rotation head on the **backbone** that predicts which of 0/90/180/270° was applied "
        "to a small extra view: the backbone should stay *sensitive* to rotation (the transformation stays "
        "recoverable) while the projector stays invariant. On `shapes`, drawn at random angles, no rotation can be "
        "told apart, and the head stays at chance (0.25).",
        (
            (
                "E-SSL on shapes: its rotation head at chance leaves no trace — a 90° rotation moves its backbone "
                "no more than SimCLR's (relative invariance 0.901 vs 0.854). Rotation is not encoded by the "
                "parameter vector, so there is no prediction arrow.",
                "lab",
                {
                    "model": "shapes-essl",
                    "dataset": "shapes",
                    "space": "backbone",
                    "sweep": "rotation angle",
                    "rotation": "90",
                },
            ),
        ),
    ),
    "EquiMod": (
        "SimCLR plus a separate equivariant head y and a predictor u(y(x), p) that, given the augmentation "
        "parameter vector p, predicts the embedding of the augmented view: Δ̂ = u(y0, p) − y0 should match "
        "the actual displacement Δ = y(t(x)) − y0. The lab shows both arrows beside two model-free guesses.",
        (
            (
                "EquiMod's equivariant head moves under a crop (relative invariance 0.202 at crop scale 0.4, vs "
                "0.832 in its projector). Its predicted arrow is no better than a parameters-only guess on recipe "
                "views (cos 0.861 vs 0.862): the lab shows both, and which is closer for this image.",
                "lab",
                {
                    "model": "shapes-equimod",
                    "dataset": "shapes",
                    "space": "equivariant",
                    "sweep": "crop scale",
                    "crop_scale": "0.4",
                },
            ),
            (
                "On shapes, with whole-circle hue jitter, the colour EquiMod keeps is saturation, not hue: "
                "grayscale moves its backbone (relative invariance 0.584; SimCLR 0.991, untrained 0.940) while a "
                "+0.25 hue shift barely does (0.993). Over three seeds, on shapes and with whole-circle hue jitter, "
                "the studies find the same, with at most a trace of hue (results §1, §9); where the jitter is "
                "partial (CIFAR-10, results §3) EquiMod keeps more hue than SimCLR.",
                "lab",
                {
                    "model": "shapes-equimod",
                    "dataset": "shapes",
                    "space": "backbone",
                    "sweep": "grayscale",
                    "grayscale": "1",
                },
            ),
        ),
    ),
    "CLeVER": (
        "Splits the backbone output channel-wise into an invariant part (IR, first 80 %) trained with the usual "
        "view-agreement loss and an equivariant factor (EF, the rest) whose views are pushed apart "
        "(orthogonal), with a weight-norm balance to keep EF from collapsing. No augmentation parameters are used.",
        (
            (
                "CLeVER's two parts: a crop to scale 0.4 moves the equivariant part further than another image "
                "is (relative invariance −0.431) and the invariant part little (0.761); switch the space in the "
                "sidebar to compare.",
                "lab",
                {
                    "model": "shapes-clever",
                    "dataset": "shapes",
                    "space": "equivariant_part",
                    "sweep": "crop scale",
                    "crop_scale": "0.4",
                },
            ),
        ),
    ),
}

# Every number the dashboard shows, in two sentences each with its baseline (docs/measures.md has the details).
MEASURES: tuple[tuple[str, str], ...] = (
    (
        "|Δ|",
        "The length of the displacement Δ = e(a(x)) − e(x) that an augmentation causes, in the space's own units. "
        "Its baseline is 0 (the identity); compare lengths only within one space and model.",
    ),
    (
        "relative invariance",
        "1 − E‖s(a(x)) − s(x)‖² / E‖s(x) − s(x′)‖² on embeddings centred and scaled by the store's clean images: "
        "1 means the view embeds as the image itself. Its baseline is 0, a view as far away as another image; "
        "negative values move further than that.",
    ),
    (
        "centred cosine",
        "cos(e(a(x)) − μ, e(x) − μ) around the mean μ of the clean embeddings. Read it against the same cosine "
        "between different images (about 0), shown beside it.",
    ),
    (
        "raw cosine (reference only)",
        "The old uncentred cos(e(a(x)), e(x)). Non-negative features make it ≈ 0.99 even between different images "
        "(an untrained network looks most invariant), so it is never compared across models or spaces.",
    ),
    (
        "cos(Δ, Δ̂)",
        "The cosine between the actual displacement and the predicted one: EquiMod's own predictor in its "
        "equivariant space, else a post-hoc ridge from (e(x), p) fitted on train images. It means something only "
        "beside its baselines: the mean Δ of the view's family and strength, a ridge from the parameters alone, "
        "one from the image alone, and the predictor given shuffled parameters.",
    ),
    (
        "gain",
        "The method's cos(Δ, Δ̂) (or R²) minus that of its strongest baseline, named beside it. Only a positive gain "
        "says the predictor knows something a model-free guess does not; the map colours items by it.",
    ),
    (
        "R²(Δ)",
        "1 − Σ‖Δ − Δ̂‖² / Σ‖Δ − mean Δ‖²: the share of the displacements' spread a predictor explains. Its baseline "
        "is 0 (guessing the mean displacement); it can be negative.",
    ),
    (
        "image dependence",
        "How much Δ changes from image to image at fixed parameters, for the actual and the predicted displacement. "
        "0 means the augmentation moves every image by the same vector, so a guess from the parameters alone suffices.",
    ),
    (
        "retrieval (MRR, Hit@k)",
        "The predicted view e(x) + Δ̂ is ranked by cosine among the actual views of all test images. Read it as the "
        "gap to the baselines, not to chance: small displacements let even the mean-Δ guess retrieve well.",
    ),
    (
        "not encoded",
        "The 15-d parameter vector has no entries for blur or rotation, so every predictor sees the identity there. "
        "Such views get no prediction arrow; only the mean displacement of the family and strength is a guess.",
    ),
    (
        "head loss at ln k",
        "A k-way pretext head's loss beside ln k (0.693 for two labels), the cross-entropy of a uniform guess: a "
        "head whose loss stays there or above has learned nothing its loss can see, whatever its accuracy curve "
        "suggests. The training page draws the line and names such a head; study reports count its seeds.",
    ),
    (
        "linear CKA",
        "The similarity of two models' embeddings of the same items, 1 when they agree up to rotation, scale and "
        "shift. Few items beside many dimensions inflate it (independent embeddings score about D / (N + D)); the "
        "debiased form scores about 0 there.",
    ),
)

DOCS = Path(__file__).resolve().parents[2] / "docs"


def read_results() -> str:
    """docs/results.md, the findings' one source; empty when this copy has no docs (the charts still show)."""
    try:
        return (DOCS / "results.md").read_text(encoding="utf-8")
    except OSError:
        return ""


ROTATION_CHART = "Rotation prediction (accuracy of the rotation head; chance 0.25)"
INVARIANCE_CHART = (
    "Relative invariance of the backbone (1 = a view is its image, 0 = as far as another image)"
)
# chart title -> (level, label) drawn as a dashed line: what a constant guess, or another image, scores (the
# invariance chart's title names its level; a label at 0 would sit on the bars)
CHART_BASELINE = {ROTATION_CHART: (0.25, "chance"), INVARIANCE_CHART: (0.0, None)}
# Charts read from the summaries `python -m engine study report ... --out docs/study-<name>` writes (docs/results.md).
STUDY_CHARTS: dict[str, dict[str, str]] = {  # chart title -> {label: "space/metric"} of a study summary
    "What the backbone knows of the classes": {
        "kNN": "backbone/knn_acc",
        "linear probe": "backbone/linear_acc",
        "online linear (trained alongside)": "online_linear/acc",
        "kNN monitor (trained alongside)": "knn_monitor/acc",
    },
    "Factor probes (test R²; 0 = the train mean)": {
        f: f"backbone/r2_{f}" for f in ("hue", "scale", "rotation", "x", "y")
    },
    "What the backbone keeps of colour": {
        "colour class (accuracy)": "backbone/colour_class_acc",
        "image hue (R²)": "backbone/r2_image_hue",
        "image saturation (R²)": "backbone/r2_image_saturation",
    },
    INVARIANCE_CHART: {
        "recipe views": "backbone/invariance/relative",
        "hue ¼ turn": "backbone/sweep/hue@0.25/invariance/relative",
        "grayscale": "backbone/sweep/grayscale@1/invariance/relative",
        "crop scale 0.4": "backbone/sweep/crop_scale@0.4/invariance/relative",
        "rotation 90°": "backbone/sweep/rotation@90/invariance/relative",
    },
    ROTATION_CHART: {
        "rotation acc": "rotation_logits/rotation_acc"
    },  # alone: its chance line holds for every bar
    "Robustness: linear-probe accuracy under test-time perturbations (probe fitted on clean features)": {
        label: f"backbone/robust_acc/{c}" for c, label in PERTURBATION_LABELS.items()
    },
}
STUDY_INTRO = (
    "Measured, not assumed: every arm of a study has identical settings and runs for the seeds listed. Pick a "
    "study: its findings are the ones written in `docs/results.md` (read from that file), its charts are drawn "
    "from the summary its `study report` wrote, with the spread over seeds as error bars. A difference within "
    "twice that spread is called noise."
)

st.title("About EquiLab")
st.markdown(
    """
An encoder *f* is **invariant** to a transformation *t* when *f(t(x)) = f(x)*: the embedding does not move,
so the information *t* changes (hue, position, scale) is gone. It is **equivariant** when the embedding moves
in a predictable way, *f(t(x)) = g_t(f(x))*: the information is kept and the displacement
**Δ = f(t(x)) − f(x)** can be predicted from *t*. Contrastive methods buy invariance to their augmentations;
the equivariant methods below keep some of what the augmentations change.

How to read the lab: each view shows how far it moves (**|Δ|**), how invariant it is (**relative invariance**,
against the between-image baseline 0), and how well its displacement is predicted (**cos(Δ, Δ̂)**) beside two
model-free guesses. Arrows are drawn in a linear 2-D basis with equal scales (PCA plane or the mean-displacement
axis), never through UMAP, whose non-linear axes would distort directions and lengths.
"""
)

with st.expander("Every measure, with its baseline", expanded=False):
    st.markdown("\n".join(f"- **{name}**: {text}" for name, text in MEASURES))
    st.caption("Definitions and constructed test cases: docs/measures.md.")

models = ui.discover_models()
for name, (text, examples) in METHODS.items():
    with st.container(border=True):
        st.subheader(name)
        st.markdown(text)
        for i, (caption, page, settings) in enumerate(examples):
            key = f"example_{name}" if i == 0 else f"example_{name}_{i + 1}"
            if st.button(caption, key=key, icon=":material/play_arrow:"):
                if settings.get("model") not in models:
                    settings = {k: v for k, v in settings.items() if k != "model"}
                    st.session_state["example_note"] = (
                        f"{name}'s shipped checkpoint is not present; using the current model."
                    )
                st.session_state["example"] = settings
                st.session_state["example_pending"] = True  # the lab applies the view and runs the sweep once
                st.session_state["apply_qp"] = True  # the sidebar adopts model/space from the URL once
                st.switch_page(f"views/{page}.py", query_params=settings)


st.header("What the methods learn: the studies")
st.markdown(STUDY_INTRO)
studies = {p.parent.name.removeprefix("study-"): p for p in sorted(DOCS.glob("study-*/summary.json"))}
if not studies:
    st.info(
        "The study summaries are not in this copy. Make them with `python -m engine study run shapes` and "
        "`python -m engine study report runs/study-shapes --out docs/study-shapes` (about 70 minutes on 2 CPU cores)."
    )
else:
    names = list(studies)
    pick = st.selectbox(
        "Study", names, index=names.index("shapes") if "shapes" in names else 0, key="about_study"
    )
    summary = cached.study_summary(studies[pick])
    found = findings(read_results(), pick)
    if found:
        with st.container(border=True):
            st.markdown(found)
    arms = (summary or {}).get("arms", [])
    baseline = baseline_note(arms)
    carried = carried_note(summary)
    st.caption(
        f"docs/study-{pick}/summary.json: mean ± std over seeds {(summary or {}).get('seeds', [])}; {baseline}. "
        + (f"{carried}. " if carried else "")
        + "Hover for the values."
    )
    # one colour per arm in every chart, none shared: D3's ten where they suffice, else 48 (the larger studies)
    palette = (
        px.colors.qualitative.D3
        if len(arms) <= 10
        else px.colors.qualitative.Dark24 + px.colors.qualitative.Light24
    )
    colours = {a: palette[i % len(palette)] for i, a in enumerate(arms)}
    for title, measures in STUDY_CHARTS.items():
        frame = tidy(summary, measures)
        if frame.empty:
            continue
        fig = px.bar(
            frame, x="measure", y="mean", color="arm", barmode="group", error_y="std", hover_data=["n"],
            title=title, labels={"mean": "mean over seeds", "measure": ""}, color_discrete_map=colours,
        )  # fmt: skip
        legend = 120 + 20 * frame["arm"].nunique()  # tall enough that the legend names every arm it shows
        fig.update_layout(height=max(360, legend), legend_title_text="arm", margin={"t": 40, "b": 10})
        if title == ROTATION_CHART:  # an accuracy on its whole scale: one arm at 0.28 is not a tall bar
            fig.update_yaxes(range=[0, 1])
        if title in CHART_BASELINE:  # the level a bar is read against
            level, label = CHART_BASELINE[title]
            fig.add_hline(y=level, line_dash="dash", **({"annotation_text": label} if label else {}))
        ceiling = rotation_ceiling(summary) if title == ROTATION_CHART else None
        if ceiling is not None:  # the best accuracy the images allow (at uniform angles, chance itself)
            fig.add_hline(
                y=ceiling, line_dash="dot", annotation_position="top left",
                annotation_text=(f"ceiling {ceiling:.3f}" if ceiling > CHART_BASELINE[title][0]
                                 else "ceiling = chance: no rotation of these images can be told apart"),
            )  # fmt: skip
        st.plotly_chart(fig, key=f"about_{pick}_{title}", config={"displaylogo": False})


# wide enough for the longest row name ("grayscale, clean base", "C4-equivariant ResNet-18") without truncation
FIRST_COLUMN = {name: st.column_config.Column(width="medium") for name in ("task", "arm", "backbone")}
CLEAN_BASE_NOTE = (
    "In the hflip row's task-predicting columns, and in grayscale's E-SSL-head columns, the training views applied "
    'the task at random before its label, which hides the label (docs/methods.md §4.4); a "…, clean base" row '
    "reads the arms trained without that (`-clean`), and the arm itself where its base never applied the task."
)
st.header("Which transformation should an equivariant task predict?")
st.markdown(
    "Understanding-ESSL asks which transformation an equivariant pretext task should predict. A task can only be "
    "learned as far as the transformed image reveals its label: the **ceiling** is the best achievable accuracy "
    "(a circle turned by 90° is the same image), computed numerically from the generator of the generated "
    "datasets and checked by Monte Carlo; **chance** is one over the number of labels. The authors' three "
    "principles:"
)
st.markdown("\n".join(f"- **{name}**: {text}" for name, text in PRINCIPLES))
transforms_path = DOCS / "study-transforms" / "summary.json"
inv_vs_eq_path = DOCS / "study-invariance_vs_equivariance" / "summary.json"
head_vs_lr_path = DOCS / "study-head_vs_lr" / "summary.json"
transforms, inv_vs_eq = cached.study_summary(transforms_path), cached.study_summary(inv_vs_eq_path)
table = cached.task_table(transforms_path, inv_vs_eq_path, head_vs_lr_path)
st.dataframe(measured_columns(table), hide_index=True, width="stretch", column_config=FIRST_COLUMN)
baselines = task_baselines(inv_vs_eq, cached.study_summary(head_vs_lr_path))
if baselines:
    st.caption(
        baselines
        + ' "as invariance − SimCLR": SimCLR with the transformation added to its augmentations minus SimCLR '
        "alone, same lr and seeds. \"E-SSL head − SimCLR at its lr\": the head's linear accuracy minus SimCLR's at "
        "the same doubled lr, the part of the gain that is the head's, not the learning rate's. \"noise\" when within "
        "twice the larger seed spread. The ceilings are of the evaluation, on clean test images. "
        + CLEAN_BASE_NOTE
    )
if transforms is None or inv_vs_eq is None:
    st.caption(
        "Measured columns appear once the studies are reported into docs/: `python -m engine study run transforms` "
        "then `python -m engine study report runs/study-transforms --out docs/study-transforms` (and the same for "
        "`invariance_vs_equivariance`)."
    )


def study_table(frame, title: str, caption: str, summary: dict | None = None) -> None:
    """A study's table under its question, when the study has been reported into docs/, with the arms whose
    training diverged (the summary's ``failed``) named under it."""
    if len(frame):
        st.subheader(title)
        st.caption(caption)
        st.dataframe(measured_columns(frame), hide_index=True, width="stretch", column_config=FIRST_COLUMN)
        failed = (summary or {}).get("failed") or []
        if failed:
            st.caption(
                "Not evaluated, training diverged: "
                + "; ".join(f"{f['arm']} (seed {f['seed']}): {f['reason'].split(';')[0]}" for f in failed)
            )


transforms_cifar = cached.study_summary(DOCS / "study-transforms_cifar10" / "summary.json")
cifar_control = cached.study_summary(DOCS / "study-cifar10_cpu" / "summary.json")
study_table(
    real_task_table(transforms_cifar, cifar_control),
    "The same tasks on CIFAR-10: which one teaches the classes?",
    "Each task alone and as E-SSL's head on real CIFAR-10 at CPU scale: ResNet-18 width 0.125, 10,000 train images, "
    "batch 256, 10 epochs, probes on all 50,000 train images (`python -m engine study run transforms_cifar10`; "
    "docs/study-transforms_cifar10). Real images have no computable identifiability ceiling, so none is shown. "
    + real_task_baselines(transforms_cifar, cifar_control)
    + " The doubled-lr control is cifar10_cpu's `simclr-lr2`: the same settings, trained without the "
    'online classifier, which does not change training. "noise" when within twice the larger seed spread. '
    + CLEAN_BASE_NOTE,
    transforms_cifar,
)
explaining = cached.study_summary(DOCS / "study-explaining_away" / "summary.json")
study_table(
    explaining_away(explaining),
    "Explaining away: does class information help predict rotation?",
    "Rotation prediction on shapes_upright alone, with the class cross-entropy added (λ = 1), with it subtracted "
    "through a separately trained classifier, as in the authors' verification script, and with that classifier's "
    "output pulled to uniform instead (`confuse`, the bounded form of the subtraction) (`python -m engine study run "
    "explaining_away`; docs/study-explaining_away). The online linear classifier reads the class from the detached "
    "backbone during training.",
    explaining,
)
explaining_cifar = cached.study_summary(DOCS / "study-explaining_away_cifar10" / "summary.json")
study_table(
    explaining_away(explaining_cifar),
    "Explaining away on CIFAR-10: does rotation prediction move with the class information?",
    "Rotation prediction alone, with the class cross-entropy added (λ = 1, trained on the labels) and with the class "
    "made unreadable (`confuse`) on real CIFAR-10 at CPU scale: ResNet-18 width 0.125, 10,000 train images, batch "
    "256, 10 epochs, probes on all 50,000 train images (`python -m engine study run explaining_away_cifar10`; "
    "docs/study-explaining_away_cifar10). Rotation is learnable on these images without the class, so the "
    "comparison is not drowned by seeds that never learn the task, as on shapes_upright. Real images have no "
    "computable identifiability ceiling, so none is shown; chance is 0.25.",
    explaining_cifar,
)
study_table(
    backbones(cached.study_summary(DOCS / "study-rotation_backbones" / "summary.json")),
    "Model equivariance: does a rotation-equivariant backbone predict rotation better?",
    "Rotation prediction alone on shapes_upright with the plain ResNet-18 and with C4- and D4-equivariant "
    "ResNet-18s (group convolutions; regular pooling keeps the orientation readable), same settings "
    "(`python -m engine study run rotation_backbones`; docs/study-rotation_backbones).",
)
