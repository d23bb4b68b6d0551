"""Every decimal number in the README's Results section and in docs/results.md is a figure of the result files
its section cites (rounded to the printed digits), or on a short allow-list of numbers that are not results.

Each section names its sources (:data:`SECTIONS`). A table row whose first cell names an arm or model is checked
against that arm's figures only, a "mean ± std" pair against one metric's mean and std. Study summaries are read
for the measures the docs cite (:data:`STUDY_METRICS`), all of them with the v2 definitions (docs/measures.md);
a summary still holding a pre-v2 measure fails :func:`test_every_study_summary_has_the_v2_measures`.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

STUDY = {
    s: DOCS / f"study-{s}" / "summary.json"
    for s in (
        "shapes", "shapes_upright", "cifar10_cpu", "transforms", "explaining_away", "clever_robustness",
        "rotation_backbones", "invariance_vs_equivariance", "colour", "colour_full", "head_vs_lr",
        "explaining_away_cifar10", "clever_robustness_cifar10", "paper_cifar10", "transforms_cifar10",
        "grayscale_conflict", "grayscale_head_lr_cifar10", "grayscale_head_lr_cifar10_rerun",
    )
}  # fmt: skip
SPACE = r"(backbone|projector|equivariant|invariant_part|equivariant_part)"
# The study measures the docs cite: probes, pretext and online heads, robustness, v2 invariance and displacement
# (the scored space's, and per sweep strength), CLeVER's parts. Retrieval and sample counts are not cited.
STUDY_METRICS = re.compile(
    rf"^({SPACE}/(knn_acc|linear_acc|r2_\w+|colour_class_\w+|robust_acc/[\w+]+"
    r"|invariance/(relative|centred_cos|between_cos|raw_cos)"
    r"|disp/(method|mean_delta|params_only|image_only|shuffled_params|gain)/(cos|r2)|disp/image/\w+"
    r"|sweep/[\w.@-]+/invariance/relative|sweep/[\w.@-]+/disp/(method|gain)/cos)"
    r"|(ir_head|ef_head|invariant_part|equivariant_part)/(cross_view_cos|between_image_cos)"
    r"|(rotation|pretext)_logits/\w+_(acc|chance|ceiling)|(online_linear|knn_monitor)/acc)$"
)
# How the measures were named before v2 (uncentred invariance, displacement without baselines).
PRE_V2 = re.compile(r"/(disp_\w+|shuffled_disp_\w+)$|/sweep/[^/]+/(cos|invariance)$")
SHIPPED = DOCS / "shipped-shapes"
# The v2 measures the docs cite (docs/measures.md): per-strength sweep rows for invariance only; retrieval and
# robustness are not cited.
SHIPPED_METRICS = re.compile(
    r"^(knn_acc|linear_acc|r2_\w+|rotation_acc|invariance/\w+|cross_view_cos|between_image_cos"
    r"|disp/(method|mean_delta|params_only|image_only|shuffled_params|gain)/(cos|r2)"
    r"|sweep/disp/(gain/(cos|r2)|image/\w+)|sweep/[\w.@-]+/invariance/relative)$"
)

# Numbers that are not results: settings, chance levels, ceilings computed elsewhere, the papers' figures.
ALLOWED = {
    "0.125": "ResNet width",
    "0.1": "kNN temperature",
    "0.10": "chance on 10 shape classes",
    "0.25": "chance / Bayes ceiling of 4-way rotation on shapes",
    "0.63": "Bayes ceiling of rotation on shapes_upright (engine.data.shapes.rotation_ceiling)",
    "0.5": "base learning rate",
    "0.03": "SGD base learning rate of the papers' CIFAR-10 setting (docs/methods.md §1.4)",
    "4.0": "EquiMod's LARS learning rate (docs/methods.md §2.4)",
    "3.12": "the GPU machine's Python version",
    "2.11": "the GPU machine's torch version",
    "0.9": "SGD momentum",
    "0.8": "colour-jitter strength of the shapes recipe",
    "90.96": "SimCLR's published linear accuracy (docs/methods.md)",
    "92.79": "EquiMod's published linear accuracy (docs/methods.md)",
    "89.5": "SimCLR's CIFAR-10 accuracy as quoted for Understanding-ESSL (docs/methods.md §5)",
    "74.4": "CLeVER's README: DINO, ImageNet-100, R18, BAug, clean",
    "46.8": "CLeVER's README: DINO, BAug, jitter + rotation",
    "76.8": "CLeVER's README: CLeVER, BAug, clean",
    "46.5": "CLeVER's README: CLeVER, BAug, jitter + rotation",
    "71.5": "CLeVER's README: DINO, CAug, clean",
    "68.7": "CLeVER's README: DINO, CAug, jitter + rotation",
    "74.2": "CLeVER's README: CLeVER, CAug, clean",
    "71.3": "CLeVER's README: CLeVER, CAug, jitter + rotation",
}

# a section reference (§7.1) is not a figure
NUMBER = re.compile(r"(?<![\w.§])[-−]?\d+\.\d+(?![\w.])")
PAIR = re.compile(r"([-−]?\d+\.\d+) ± (\d+\.\d+)")


@dataclass
class Figures:
    """Cited figures: arm -> "[study:]space/metric" -> (mean, std or None)."""

    arms: dict[str, dict[str, tuple[float, float | None]]] = field(default_factory=dict)

    def add(self, arm: str, metric: str, mean: float, std: float | None = None) -> None:
        if math.isfinite(mean):
            self.arms.setdefault(arm, {})[metric] = (mean, std)

    def values(self, arm: str | None = None):
        pools = [self.arms[arm]] if arm in self.arms else self.arms.values()
        return [v for pool in pools for v in pool.values()]


def study_figures(*names: str, prose: tuple[str, ...] = ()) -> Figures:
    """The cited figures of studies ``names``; those of ``prose`` count in running text only, so that a table row
    named like one of their arms (a transformation called ``rotation``) is not read as that arm."""
    figs = Figures()
    for name in (*names, *prose):
        doc = json.loads(STUDY[name].read_text())
        for arm, metrics in doc["metrics"].items():
            for key, s in metrics.items():
                if STUDY_METRICS.match(key) and s["n"]:
                    owner = f"({name}: {arm})" if name in prose else arm
                    figs.add(owner, f"{name}:{key}", s["mean"], s["std"] if s["n"] > 1 else None)
    return figs


def shipped_figures() -> Figures:
    figs = Figures()
    for path in sorted(SHIPPED.glob("*/eval.json")):
        doc = json.loads(path.read_text())
        arm = Path(doc["source"]["checkpoint"]).stem
        for r in doc["results"]:
            if r["value"] is not None and SHIPPED_METRICS.match(r["metric"]):
                figs.add(arm, f"{r['space']}/{r['metric']}", float(r["value"]))
    return figs


def _num(s: str) -> float:
    return float(s.replace("−", "-"))


def matches(printed: str, value: float) -> bool:
    """``value`` rounds to ``printed`` at its number of decimals."""
    digits = len(printed.split(".")[1])
    return abs(_num(printed) - value) <= 0.5 * 10**-digits + 1e-12


def unexplained(text: str, figs: Figures) -> list[str]:
    """Decimal numbers in ``text`` that are neither cited figures nor allowed."""
    bad = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        arm = cells[0] if cells and cells[0] in figs.arms else None
        paired: set[int] = set()
        for m in PAIR.finditer(line):
            paired.update((m.start(1), m.start(2)))
            if not any(s is not None and matches(m[1], v) and matches(m[2], s) for v, s in figs.values(arm)):
                bad.append(f"{m[0]!r} in: {line.strip()[:120]}")
        for m in NUMBER.finditer(line):
            if m.start() in paired or m[0].lstrip("-−") in ALLOWED:
                continue
            if not any(matches(m[0], v) for v, _ in figs.values(arm)):
                bad.append(f"{m[0]!r} in: {line.strip()[:120]}")
    return bad


def section(path: Path, start: str, end: str | None) -> str:
    """The text of ``path`` from the line starting with ``start`` up to the next starting with ``end``."""
    text = "\n" + path.read_text()
    i = text.index("\n" + start) + 1
    j = text.index("\n" + end, i) if end else len(text)
    return text[i:j]


README = ROOT / "README.md"
RESULTS = DOCS / "results.md"
# (document, section start, section end, sources)
SECTIONS = [
    (
        README,
        "### The shapes study",
        "### CIFAR-10 on CPU",
        lambda: study_figures("shapes", "shapes_upright"),
    ),
    (
        README,
        "### CIFAR-10 on CPU",
        "### CIFAR-10 at the papers'",
        lambda: study_figures("cifar10_cpu", "transforms_cifar10"),
    ),
    (README, "### CIFAR-10 at the papers'", "### The shipped models", lambda: study_figures("paper_cifar10")),
    (README, "### The shipped models", "### Benchmarks", shipped_figures),
    (RESULTS, "# Results", "## 1.", lambda: Figures()),
    (RESULTS, "## 1.", "## 2.", lambda: study_figures("shapes")),
    (RESULTS, "## 2.", "## 3.", lambda: study_figures("shapes_upright", "shapes")),
    (RESULTS, "## 3.", "## 4.", lambda: study_figures("cifar10_cpu")),
    (RESULTS, "## 4.", "## 5.", shipped_figures),
    (
        RESULTS,
        "## 5.",
        "## 6.",
        lambda: study_figures(
            "transforms",
            "explaining_away",
            "rotation_backbones",
            "invariance_vs_equivariance",
            "head_vs_lr",
            "grayscale_conflict",
            "grayscale_head_lr_cifar10",
            "grayscale_head_lr_cifar10_rerun",
            "explaining_away_cifar10",
            "transforms_cifar10",
            prose=("cifar10_cpu",),
        ),
    ),
    (
        RESULTS,
        "## 6.",
        "## 7.",
        lambda: study_figures("clever_robustness", "clever_robustness_cifar10", "cifar10_cpu"),
    ),
    (
        RESULTS,
        "## 7.",
        "## 8.",
        lambda: study_figures(
            "cifar10_cpu", "transforms", "clever_robustness", "clever_robustness_cifar10", "paper_cifar10"
        ),
    ),
    (RESULTS, "## 8.", "## 9.", lambda: study_figures("colour")),
    (RESULTS, "## 9.", None, lambda: study_figures("colour_full", "colour")),
]


@pytest.mark.parametrize(
    "doc,start,end,sources", SECTIONS, ids=[f"{d.name}:{s.strip('# ')[:20]}" for d, s, _, _ in SECTIONS]
)
def test_every_number_is_a_cited_figure(doc, start, end, sources):
    bad = unexplained(section(doc, start, end), sources())
    assert not bad, "numbers not in the cited result files:\n" + "\n".join(bad)


def test_results_section_covers_the_readme_results():
    """The checked README sections are the whole Results section up to the benchmarks (bench output)."""
    text = README.read_text()
    results = section(README, "## Results", "### Benchmarks")
    checked = "".join(section(README, s, e) for d, s, e, _ in SECTIONS if d == README)
    intro = results[: results.index("### The shapes study")]
    assert not NUMBER.findall(intro)
    assert "".join((intro + checked).split()) == "".join(results.split())
    assert text.index("### Benchmarks") > text.index("### The shipped models")


def _absent(figs: Figures, digits: int = 3) -> str:
    """A number in [0, 1) that no cited figure rounds to."""
    for k in range(137, 1000):
        s = f"{k / 10**digits:.{digits}f}"
        if s not in ALLOWED and not any(matches(s, v) for v, _ in figs.values()):
            return s
    raise AssertionError("every number is a figure")


def test_a_made_up_number_fails():
    figs = shipped_figures()
    made_up = _absent(figs)
    assert unexplained(f"SimCLR reaches kNN {made_up} on shapes.", figs)
    row = f"| shapes-simclr | {made_up} |"
    assert unexplained(row, figs)
    real = f"{figs.arms['shapes-simclr']['backbone/knn_acc'][0]:.3f}"
    assert not unexplained(f"| shapes-simclr | {real} |", figs)


def test_a_pair_must_be_one_metrics_mean_and_std():
    figs = study_figures("shapes")
    mean, std = figs.arms["simclr"]["shapes:backbone/knn_acc"]
    assert not unexplained(f"kNN {mean:.3f} ± {std:.3f}", figs)
    assert unexplained(f"kNN {mean:.3f} ± {std + 0.1:.3f}", figs)


def test_every_study_summary_has_the_v2_measures():
    """A study reported before the v2 definitions (e.g. ``equivariant/disp_cos``) must be re-run, not cited."""
    for name, path in STUDY.items():
        doc = json.loads(path.read_text())
        stale = sorted({k for m in doc["metrics"].values() for k in m if PRE_V2.search(k)})
        assert not stale, f"{name}: pre-v2 measures {stale[:3]}: re-run the study and its report"
    for old in ("equivariant/disp_cos", "backbone/disp_eqgain", "backbone/sweep/hue@0.5/invariance"):
        assert PRE_V2.search(old) and not STUDY_METRICS.match(old)
    for new in (
        "equivariant/disp/method/cos",
        "backbone/sweep/hue@-0.25/invariance/relative",
        "ef_head/cross_view_cos",
    ):
        assert STUDY_METRICS.match(new) and not PRE_V2.search(new)


def about_methods() -> dict:
    """The About page's METHODS literal (explanations and one-click example captions), read without running it."""
    tree = ast.parse((ROOT / "app" / "views" / "about.py").read_text())
    node = next(
        n for n in tree.body if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "METHODS"
    )
    return ast.literal_eval(node.value)


def test_about_examples_quote_the_shipped_models_figures():
    """Every number an About explanation or example caption quotes is a figure of docs/shipped-shapes/*/eval.json."""
    figs = shipped_figures()
    methods = about_methods()
    assert sum(len(examples) for _, examples in methods.values()) >= 5
    for name, (text, examples) in methods.items():
        for caption in (text, *(c for c, _, _ in examples)):
            bad = unexplained(caption, figs)
            assert not bad, f"{name}: " + "; ".join(bad)
    made_up = _absent(figs)
    assert unexplained(f"grayscale moves its backbone (relative invariance {made_up})", figs)
