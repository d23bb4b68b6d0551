"""`python -m engine bench browser` works end to end: one round of every measurement on the fixture stores.

Not a timing test: it checks that every interaction the benchmark drives (slider, seed, colour, box, lasso,
displacement colouring, Compare selection, retrieval query, new tab) produced the DOM change it waits for, and that
the table and the JSON name every measurement with its target.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.benches.browser import TARGETS

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]


def test_bench_browser_runs_one_round_on_the_fixture_stores(app_env, tmp_path):
    root = Path(app_env["EQUILAB_STORES"]).parent
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "engine", "bench", "browser", "--root", str(root), "--no-build"]
    cmd += ["--models", "shapes-none,shapes-none-b", "--rounds", "1", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    rows = {r["measurement"]: r for r in doc["rows"]}
    expected = [m for m in TARGETS if not m.startswith("first open")]  # --cold not asked for
    assert sorted(rows) == sorted(expected), proc.stdout
    settled = [r["settled"].split("/") for r in rows.values()]
    assert all(done == run for done, run in settled), doc["rows"]  # each change showed in the page
    assert all(r["target_s"] == TARGETS[m] for m, r in rows.items())
    assert "widget change -> page settled" in proc.stdout and "map lasso" in proc.stdout
