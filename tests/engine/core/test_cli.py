"""The CLI's error contract: a missing requirement is one line with the fix, not a traceback (a real subprocess in
which ``umap`` cannot be imported, as in an environment without umap-learn)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

BLOCK_UMAP = """
import importlib.abc, sys
class _NoUmap(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "umap":
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _NoUmap())
"""
CHECKPOINT = str(ROOT / "checkpoints" / "shapes-none.json")
ARGS = ("--checkpoint", CHECKPOINT, "--dataset", "shapes", "--data-option", "size=64", "--device", "cpu")


def _embed(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_UMAP)
    cmd = [sys.executable, "-m", "engine", *extra, "embed", "--out", str(tmp_path / "stores"), *ARGS]
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_missing_requirement_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    done = _embed(tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: UMAP maps need umap-learn") and "make install" in last
    assert not list((tmp_path / "stores").rglob("manifest.json"))  # no half-built store is left as a store


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    done = _embed(tmp_path, "-v")
    assert done.returncode != 0 and "Traceback" in done.stderr
