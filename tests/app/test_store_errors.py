"""AppTest: damaged stores (modified .npy, missing index, newer manifest) on every page that opens a store.

Each page must show the engine's StoreError and the exact rebuild command (parsed here by the engine's own CLI
parser, which must accept it and target the store the app reads first) instead of a traceback, draw nothing from
the damaged store, and recover once the store is rebuilt.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from engine.cli import build_parser
from engine.store.build import store_path
from engine.store.format import MANIFEST_VERSION

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
PAGES = ("lab", "map", "retrieval", "compare")
MODEL_A, MODEL_B = "shapes-none-b", "shapes-none"  # the sidebar default is the first sorted file


def modify_npy(store: Path) -> str:
    f = store / "backbone.npy"
    data = bytearray(f.read_bytes())
    data[-8:] = bytes(255 - b for b in data[-8:])  # same size: only the checksum can tell
    f.write_bytes(bytes(data))
    return "sha256 mismatch"


def remove_index(store: Path) -> str:
    (store / "backbone.faiss").unlink()
    return "is missing"


def newer_manifest(store: Path) -> str:
    m = json.loads((store / "manifest.json").read_text())
    m["version"] = MANIFEST_VERSION + 1
    (store / "manifest.json").write_text(json.dumps(m))
    return f"manifest version {MANIFEST_VERSION + 1}"


DAMAGE = {"modified-npy": modify_npy, "missing-index": remove_index, "newer-manifest": newer_manifest}


@pytest.fixture
def roots(store_roots: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A private copy of the fixture roots with each store moved to where `python -m engine embed` writes it."""
    out = {k: tmp_path / Path(v).name for k, v in store_roots.items()}
    for k, v in store_roots.items():
        shutil.copytree(v, out[k])
        monkeypatch.setenv(k, str(out[k]))
    stores = out["EQUILAB_STORES"]
    for label in (MODEL_A, MODEL_B):
        dest = canonical(out, label)
        dest.parent.mkdir(parents=True)
        (stores / f"{label}-shapes-test").rename(dest)
    return out


def ckpt(roots: dict[str, Path], label: str) -> Path:
    return roots["EQUILAB_CHECKPOINTS"] / f"{label}.safetensors"


def canonical(roots: dict[str, Path], label: str) -> Path:
    return store_path(ckpt(roots, label), "shapes", "test", roots["EQUILAB_STORES"])


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()  # the default page is the lab
    if page != "lab":
        at.switch_page(f"views/{page}.py").run()
    return at


def assert_refused_with_command(at: AppTest, store: Path, reason: str, checkpoint: Path) -> None:

    assert not at.exception, [e.message for e in at.exception]
    assert at.error, "no error box"
    msg = at.error[0].value
    assert msg.startswith("StoreError: ") and str(store) in msg and reason in msg, msg
    assert "python -m engine" not in msg and msg.endswith("with the command below.")  # one command only
    cmd = shlex.split(at.code[0].value)
    assert cmd[:4] == ["python", "-m", "engine", "embed"], cmd
    args = build_parser().parse_args(cmd[3:])  # the engine's own CLI accepts it as it is
    assert args.command == "embed" and args.overwrite and Path(args.checkpoint) == checkpoint
    assert (
        store_path(args.checkpoint, args.dataset, args.split, args.out) == store
    )  # rebuilds this very store
    assert not at.get("plotly_chart") and not at.get("image"), "drew something from a damaged store"


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_store_shows_the_error_and_the_rebuild_command(roots, page, damage):
    store = canonical(roots, MODEL_A)
    reason = DAMAGE[damage](store)
    at = open_page(page)
    assert at.sidebar.selectbox(key="sb_model").value == MODEL_A
    assert_refused_with_command(at, store, reason, ckpt(roots, MODEL_A))


def test_compare_names_model_b_when_only_its_store_is_damaged(roots):
    store = canonical(roots, MODEL_B)
    reason = modify_npy(store)
    at = open_page("compare")
    assert at.selectbox(key="cmp_b").value == MODEL_B
    assert_refused_with_command(at, store, reason, ckpt(roots, MODEL_B))


def test_store_damaged_while_the_page_is_open_then_rebuilt(roots, tmp_path):
    store = canonical(roots, MODEL_A)
    backup = tmp_path / "backup"
    shutil.copytree(store, backup)
    at = open_page("map")
    assert not at.exception and not at.error and at.get("plotly_chart")
    reason = remove_index(store)
    at.run()  # any widget change reruns the page: the size check notices the deleted file
    assert_refused_with_command(at, store, reason, ckpt(roots, MODEL_A))
    shutil.rmtree(store)
    shutil.copytree(backup, store)  # what the shown command produces: a complete store at that path
    at.run()
    assert not at.exception and not at.error
    assert at.get("plotly_chart")


def test_the_command_fixes_a_damaged_store_outside_the_canonical_layout(roots):
    """A store found elsewhere (e.g. written by a script) is damaged: the command's store is then preferred."""
    stores = roots["EQUILAB_STORES"]
    good = canonical(roots, MODEL_A)
    odd = stores / "hand-made-store"
    good.rename(odd)
    reason = modify_npy(odd)
    at = open_page("retrieval")
    assert at.error and str(odd) in at.error[0].value and reason in at.error[0].value
    cmd = shlex.split(at.code[0].value)
    out = Path(cmd[cmd.index("--out") + 1])
    assert store_path(ckpt(roots, MODEL_A), "shapes", "test", out) == good
    shutil.copytree(odd, good)
    modify_npy(good)  # flip the same bytes back: the store the command would have written
    at = open_page("retrieval")
    assert not at.exception and not at.error
    assert at.metric[0].label == "Query latency"
    assert len(at.get("image")) == 2  # query + neighbours: the element type the refusal check looks for
    emb = np.load(good / "backbone.npy")
    assert np.isfinite(emb).all()


def test_cifar10_absent_says_it_is_not_shipped_and_how_to_point_at_it(store_roots, tmp_path, monkeypatch):
    """No CIFAR-10 under the data root: no stale building box, the reason, the env var, the layout, --data-root."""

    for k, v in store_roots.items():
        monkeypatch.setenv(k, v)
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("EQUILAB_DATA_ROOT", str(empty))
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params["dataset"] = "cifar10"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.get("expandable") and not at.get("status"), "the 'Building the store' box stayed"
    msg = at.error[0].value
    assert msg.startswith("DataError: ") and "not shipped" in msg and "EQUILAB_DATA_ROOT" in msg
    assert "cifar-10-batches-py" in msg
    lines = at.code[0].value.splitlines()
    assert lines[0].startswith("export EQUILAB_DATA_ROOT=")
    cmd = shlex.split(lines[1])
    args = build_parser().parse_args(cmd[3:])  # the engine's CLI accepts the command as shown
    assert args.command == "embed" and args.dataset == "cifar10" and args.data_root == "/path/to/cifar10"
