"""The study findings shared by docs/results.md and the About page (engine.lab.studies.findings)."""

from __future__ import annotations

from pathlib import Path

from engine.lab.studies import baseline_note, carried_note, findings, marked_studies, rotation_ceiling

DOCS = Path(__file__).resolve().parents[3] / "docs"
RESULTS = DOCS / "results.md"


def test_findings_are_the_marked_text_of_that_study_only():
    md = (
        "# Results\n<!-- findings: shapes -->\n- **A** 0.5\n<!-- /findings -->\ntext\n"
        "<!-- findings: shapes_upright -->\n- **B**\n<!-- /findings -->\n"
    )
    assert findings(md, "shapes") == "- **A** 0.5"
    assert findings(md, "shapes_upright") == "- **B**"  # not the prefix's block
    assert findings(md, "cifar10_cpu") is None
    assert marked_studies(md) == ["shapes", "shapes_upright"]


def test_unclosed_or_empty_blocks():
    assert findings("<!-- findings: a -->\n- x", "a") == "- x"  # runs to the end
    assert findings("<!-- findings: a --><!-- /findings -->", "a") is None


def test_every_reported_study_has_its_findings_in_results():
    md = RESULTS.read_text()
    reported = sorted(p.parent.name.removeprefix("study-") for p in DOCS.glob("study-*/summary.json"))
    assert reported
    missing = [s for s in reported if not findings(md, s)]
    assert not missing, f"docs/results.md marks no findings for {missing}"
    assert len(marked_studies(md)) == len(set(marked_studies(md)))  # one block per study
    for name in marked_studies(md):
        text = findings(md, name)
        assert "](" not in text, f"{name}: a relative link would break on the About page"


def test_baseline_note_names_only_the_baselines_a_study_has():
    assert "`none` arm is the untrained network" in baseline_note(["simclr", "none"])
    assert "read against `simclr` and `simclr-lr2`" in baseline_note(["simclr", "simclr-lr2", "eq-blur"])
    assert baseline_note(["simclr", "eq-blur"]) == "no untrained arm here: each arm is read against `simclr`"
    assert baseline_note(["simclr", "essl", "equimod"]).endswith(
        "read against `simclr` (and no `simclr-lr2`: E-SSL's lead is not separated from its doubled lr)"
    )
    assert baseline_note(["clever-baug", "clever-caug"]) == "no untrained arm in this study"


def test_carried_note_says_where_each_carried_arm_came_from_and_under_what_name():
    summary = {
        "arms": ["pretext-blur", "essl-blur", "simclr"],
        "carried": {
            "from": "docs/study-invariance_vs_equivariance/summary.json",
            "arms": ["essl-blur", "simclr"],
            "was": {"essl-blur": "eq-blur"},
        },
    }
    assert carried_note(summary) == (
        "`essl-blur` (`eq-blur` there), `simclr` carried from the `invariance_vs_equivariance` report: the same "
        "runs (same method, options, settings and seeds)"
    )
    assert carried_note({"arms": ["simclr"]}) == carried_note(None) == ""  # nothing carried: nothing said
    assert carried_note({"carried": {"from": "x.json", "arms": []}}) == ""
    assert carried_note({"carried": "junk"}) == ""  # an odd file says nothing rather than failing the page


def test_rotation_ceiling_is_the_datasets_identifiability_ceiling_or_none():
    assert abs(rotation_ceiling({"dataset": "shapes_upright"}) - 0.6325) < 1e-4  # docs/results.md: 0.632
    assert rotation_ceiling({"dataset": "shapes"}) == 0.25  # uniform angles: no better than chance
    assert rotation_ceiling({"dataset": "cifar10"}) is None  # real images: not computable
    assert (
        rotation_ceiling({"arms": []}) is None and rotation_ceiling(None) is None
    )  # an old summary names none
