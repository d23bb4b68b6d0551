"""About / teach: invariance vs equivariance, the four methods, and one-click examples on shapes."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import ui

# name -> (explanation, example caption, target page, session-state/URL settings for the example)
METHODS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "SimCLR": (
        "Contrastive instance discrimination: two random views of an image are pulled together and pushed away "
        "from the other images of the batch (NT-Xent). It learns **invariance** to every augmentation it uses — "
        "including colour jitter, so the hue of a shape is deliberately erased from the projector embedding.",
        "SimCLR's colour-jitter invariance erases hue: sweep the hue shift and watch |Δ| stay small.",
        "lab",
        {"model": "shapes-simclr", "sweep": "hue shift", "space": "projector"},
    ),
    "E-SSL": (
        "SimCLR plus a 4-way rotation head on the **backbone** that predicts which of 0/90/180/270° was applied "
        "to a small extra view: the backbone must stay *sensitive* to rotation (equivariant in the weak sense of "
        "'the transformation is recoverable') while the projector stays invariant.",
        "E-SSL keeps rotation: sweep the rotation angle in the backbone space.",
        "lab",
        {"model": "shapes-essl", "sweep": "rotation angle", "space": "backbone"},
    ),
    "EquiMod": (
        "SimCLR plus a separate equivariant head y and a predictor u(y(x), p) that, given the augmentation "
        "parameter vector p, predicts the embedding of the augmented view: Δ̂ = u(y0, p) − y0 should match "
        "the actual displacement Δ = y(t(x)) − y0. The lab shows both arrows and cos(Δ, Δ̂).",
        "EquiMod predicts displacements: compare actual and predicted arrows for a crop.",
        "lab",
        {"model": "shapes-equimod", "sweep": "crop scale", "space": "equivariant"},
    ),
    "CLeVER": (
        "Splits the backbone output channel-wise into an invariant part (IR, first 80 %) trained with the usual "
        "view-agreement loss and an equivariant factor (EF, the rest) whose views are pushed apart "
        "(orthogonal), with a weight-norm balance to keep EF from collapsing. No augmentation parameters are used.",
        "CLeVER's two parts: neighbourhoods in the invariant vs equivariant part.",
        "map",
        {"model": "shapes-clever", "space": "equivariant_part"},
    ),
}

DOCS = Path(__file__).resolve().parents[2] / "docs"
# Figures written by `python -m engine study report ... --out docs/study-<name>` (see docs/results.md).
STUDY_FIGURES: tuple[tuple[str, str], ...] = (
    (
        "study-shapes/factor_probes.png",
        "Shape-class accuracy and factor-probe R² on the backbone, per method.",
    ),
    ("study-shapes/sweep_invariance.png", "How far each augmentation family moves the backbone embedding."),
    ("study-shapes/sweep_prediction.png", "How well the displacement is predicted, per family and strength."),
)
STUDY_FINDINGS = """
Measured, not assumed: eight arms with identical settings on `shapes`, 3 seeds each (tables and commands in
`docs/results.md`).

- **Every method learns shape**, far above the untrained network; after 10 CPU epochs SimCLR and E-SSL lead.
- **Hue is erased by every contrastive method** (probe R² ≈ 0.01–0.07 against ≈ 0.6 for an untrained network);
  EquiMod keeps a little more than SimCLR, nowhere near the papers' story of "equivariance keeps colour".
- **EquiMod predicts its own displacements** (cos(Δ, Δ̂) ≈ 0.85 vs ≈ 0.16 with shuffled parameters); a post-hoc
  predictor gets ≈ 0.6 on any network, even an untrained one, so the shuffled control is what makes the score mean
  something.
- **E-SSL's rotation head stays at chance (0.25) on `shapes`**, whose shapes are drawn at random angles: a rotation
  is only predictable when images have an "up". On `shapes_upright` it becomes learnable (ceiling 0.63).
- **E-SSL's gain over SimCLR comes with its doubled learning rate**: SimCLR at that same rate (the study's
  `simclr-lr2` control) matches it.
"""

st.title("About EquiLab")
st.markdown(
    """
An encoder *f* is **invariant** to a transformation *t* when *f(t(x)) = f(x)*: the embedding does not move,
so the information *t* changes (hue, position, scale) is gone. It is **equivariant** when the embedding moves
in a predictable way, *f(t(x)) = g_t(f(x))*: the information is kept and the displacement
**Δ = f(t(x)) − f(x)** can be predicted from *t*. Contrastive methods buy invariance to their augmentations;
the equivariant methods below keep some of what the augmentations change.

How to read the lab: **|Δ|** is how far a view moves; **invariance** is cos(f(x), f(t(x))) (1 = unmoved);
**cos(Δ, Δ̂)** and the **relative error** |Δ̂ − Δ| / |Δ| say how well the displacement is predicted
(EquiMod's own predictor, or a post-hoc linear predictor fitted on frozen embeddings for the other methods).
Arrows are drawn in a linear 2-D basis (PCA plane or the mean-displacement axis), never through UMAP,
whose non-linear axes would distort directions and lengths.
"""
)

models = ui.discover_models()
for name, (text, example, page, settings) in METHODS.items():
    with st.container(border=True):
        st.subheader(name)
        st.markdown(text)
        if st.button(example, key=f"example_{name}", icon=":material/play_arrow:"):
            if settings.get("model") not in models:
                settings = {k: v for k, v in settings.items() if k != "model"}
                st.session_state["example_note"] = (
                    f"{name}'s shipped checkpoint is not present; using the current model."
                )
            st.session_state["example"] = settings
            st.session_state["apply_qp"] = True  # the sidebar adopts model/space from the URL once
            st.switch_page(f"views/{page}.py", query_params=settings)


st.header("What the methods learn: the shapes study")
st.markdown(STUDY_FINDINGS)
present = [(DOCS / rel, caption) for rel, caption in STUDY_FIGURES if (DOCS / rel).is_file()]
for path, caption in present:
    st.image(str(path), caption=caption)
if not present:
    st.info(
        "The study figures are not in this copy. Make them with `python -m engine study run shapes` and "
        "`python -m engine study report runs/study-shapes --out docs/study-shapes` (about an hour on 2 CPU cores)."
    )
