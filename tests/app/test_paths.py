"""Path safety: no widget or URL value reaches a file outside the configured roots; no raw HTML; local binding.

The resolver (engine.core.paths.resolve_inside) is tested directly on hostile values; the pages are then driven with
the same values through AppTest while a Python audit hook records every file the process opens or lists, so
"refused" also means "nothing outside the roots was read".
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from app import ui
from app.ui import thumb_grid_html
from engine.core.paths import UnsafePathError, is_inside, resolve_inside
from engine.store.discovery import find_store

REPO = Path(__file__).resolve().parents[2]
MAIN = str(REPO / "app" / "main.py")


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Roots with one real run, links in and out, and a secret run directory outside every root."""
    t = {k: tmp_path / k for k in ("checkpoints", "runs", "stores")}
    for k, d in t.items():
        d.mkdir()
        monkeypatch.setenv(f"EQUILAB_{k.upper()}", str(d))
    t["outside"] = tmp_path / "outside" / "secret"
    t["outside"].mkdir(parents=True)
    (t["outside"] / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
    (t["outside"] / "evil.safetensors").write_bytes(b"x")
    (t["outside"] / "evil.json").write_text("{}")
    real = t["runs"] / "real"
    real.mkdir()
    (real / "metrics.jsonl").write_text('{"step": 0, "loss": 2.0}\n{"step": 1, "loss": 1.5}\n')
    (t["runs"] / "link-out").symlink_to(t["outside"], target_is_directory=True)
    (t["runs"] / "link-in").symlink_to(real, target_is_directory=True)
    (t["runs"] / "file-out").mkdir()
    (t["runs"] / "file-out" / "metrics.jsonl").symlink_to(t["outside"] / "metrics.jsonl")
    (t["runs"] / "loop").symlink_to(t["runs"] / "loop")
    (t["runs"] / "etc").symlink_to("/etc", target_is_directory=True)
    for ext in ("safetensors", "json"):  # a checkpoint that is a link to a file outside
        (t["checkpoints"] / f"evil.{ext}").symlink_to(t["outside"] / f"evil.{ext}")
    (t["stores"] / "evil-store").symlink_to(t["outside"], target_is_directory=True)
    return t


REFUSED = {
    "": "empty path",
    "   ": "empty path",
    "..": "outside the allowed roots",
    "../": "outside the allowed roots",
    "../../etc/passwd": "outside the allowed roots",
    "real/../../..": "outside the allowed roots",
    "/etc/passwd": "outside the allowed roots",
    "/": "outside the allowed roots",
    "link-out": "outside the allowed roots",  # a link inside the root that leads out
    "link-out/metrics.jsonl": "outside the allowed roots",
    "runs/link-out": "outside the allowed roots",
    "file-out/metrics.jsonl": "outside the allowed roots",
    "etc/passwd": "outside the allowed roots",
    "loop": "outside the allowed roots",  # a symlink loop never resolves
    "real\x00/../../etc/passwd": "NUL byte",
    "\x00": "NUL byte",
    "a" * 5000: "longer than",
    "~/.ssh": "does not exist",  # no home expansion: a literal "~" folder, absent
    "%2e%2e/%2e%2e/etc/passwd": "does not exist",  # URL escapes are not decoded into ".."
    "missing-run": "does not exist",
}


@pytest.mark.parametrize("text", list(REFUSED), ids=[repr(k)[:40] for k in REFUSED])
def test_resolver_refuses_hostile_values_with_a_reason(tree, text):
    roots = [tree["checkpoints"], tree["runs"], tree["stores"]]
    with pytest.raises(UnsafePathError) as e:
        resolve_inside(text, roots, anchors=[tree["runs"].parent])
    assert REFUSED[text] in str(e.value)
    if text.strip() and len(text) < 100:
        assert repr(text) in str(e.value)  # the message names the value as typed


def test_resolver_refuses_an_absolute_path_to_the_outside_dir(tree):
    with pytest.raises(UnsafePathError, match="outside the allowed roots"):
        resolve_inside(str(tree["outside"]), [tree["runs"]])
    with pytest.raises(UnsafePathError, match="outside the allowed roots"):  # other roots do not count
        resolve_inside(str(tree["runs"] / "real"), [tree["checkpoints"], tree["stores"]])


@pytest.mark.parametrize(
    "text", ["real", "./real", "real/../real", "runs/real", "link-in", "link-in/metrics.jsonl", "{abs}"]
)
def test_resolver_accepts_paths_that_stay_inside(tree, text):
    text = text.replace("{abs}", str(tree["runs"] / "real"))
    got = resolve_inside(text, [tree["checkpoints"], tree["runs"]], anchors=[tree["runs"].parent])
    real = (tree["runs"] / "real").resolve()
    assert got in (real, real / "metrics.jsonl")
    assert is_inside(got, tree["runs"])


def test_is_inside_follows_links(tree):
    assert is_inside(tree["runs"] / "link-in", tree["runs"])
    assert not is_inside(tree["runs"] / "link-out", tree["runs"])
    assert not is_inside(tree["runs"] / "loop", tree["runs"])
    assert not is_inside(tree["runs"].parent / "runs-sibling", tree["runs"])  # prefix is not containment


@pytest.fixture
def accessed():
    """Paths the process opens or lists while the test runs (Python audit hook; hooks cannot be removed)."""
    seen: list[str] = []
    on = [True]

    def hook(event: str, args: tuple) -> None:
        if on[0] and event in ("open", "os.listdir", "os.scandir") and args:
            p = args[0]
            if isinstance(p, str | bytes | os.PathLike):
                seen.append(os.path.realpath(os.fsdecode(p)))

    sys.addaudithook(hook)
    yield seen
    on[0] = False


def touched(seen: list[str], tree: dict[str, Path]) -> list[str]:
    out = str(tree["outside"].parent.resolve())
    # /etc itself and /etc/passwd are the hostile targets (Python reads /etc/mime.types on its own)
    return [p for p in seen if p.startswith(out) or p in ("/etc", "/etc/passwd")]


def training(tree) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.switch_page("views/training.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


TYPED = ["../outside/secret", "../../etc", "/etc/passwd", str(REPO.parent), "link-out", "file-out", ".."]


def test_training_page_refuses_typed_paths_and_reads_nothing_outside(tree, accessed):
    at = training(tree)
    assert "No checkpoints" in at.sidebar.warning[0].value  # the evil.safetensors link is not offered
    assert sorted(at.multiselect(key="train_runs").options) == ["real"]  # no link-out, no file-out
    for typed in [*TYPED, str(tree["outside"]), "real\x00/../.."]:
        at.text_input(key="train_path").input(typed).run()
        assert not at.exception, typed
        assert at.error and "refused" in at.error[0].value, typed
        assert "allowed roots" in at.error[0].value, typed
        assert at.multiselect(key="train_runs").options == ["real"], typed
    assert touched(accessed, tree) == []
    at.text_input(key="train_path").input("link-in").run()  # a link that stays inside is fine
    assert not at.error and "link-in" in at.multiselect(key="train_runs").options


@pytest.mark.parametrize(
    "query",
    [
        {"model": "../../etc/passwd"},
        {"model": "/etc/passwd"},
        {"model": "evil"},  # the outside-pointing checkpoint link is never offered
        {"dataset": "../outside/secret"},
        {"model_b": "/etc/passwd"},
        {"space": "../../etc/passwd"},
        {"item": "../../etc/passwd"},
    ],
    ids=lambda q: next(iter(q)),
)
def test_url_values_are_refused_and_read_nothing(store_roots, tree, accessed, monkeypatch, query):

    for k, v in store_roots.items():  # a copy of the fixture roots, plus a checkpoint link pointing out
        copy = tree["outside"].parents[1] / "fx" / k
        shutil.copytree(v, copy)
        monkeypatch.setenv(k, str(copy))
    for ext in ("safetensors", "json"):
        link = tree["outside"].parents[1] / "fx" / "EQUILAB_CHECKPOINTS" / f"evil.{ext}"
        link.symlink_to(tree["outside"] / f"evil.{ext}")
    at = AppTest.from_file(MAIN, default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    warned = [w.value for w in [*at.sidebar.warning, *at.warning]]
    page = "compare" if "model_b" in query else "map"
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    warned += [w.value for w in [*at.sidebar.warning, *at.warning]]
    models = at.sidebar.selectbox(key="sb_model").options
    assert "evil" not in models and len(models) == 2
    key = next(iter(query))
    if key in ("model", "dataset", "model_b"):  # said once, then the URL holds the valid choice
        assert any(f"Ignored {key}=" in w for w in warned), warned
    assert at.get("plotly_chart"), "the page fell back to a valid choice and drew"
    assert touched(accessed, tree) == []


def test_store_link_pointing_outside_is_never_opened(store_roots, tree, accessed, monkeypatch):
    """A store directory that is a symlink to elsewhere is skipped even when its manifest matches."""

    monkeypatch.setenv("EQUILAB_CHECKPOINTS", store_roots["EQUILAB_CHECKPOINTS"])
    monkeypatch.setenv("EQUILAB_STORES", str(tree["stores"]))
    real = next(Path(store_roots["EQUILAB_STORES"]).iterdir())
    shutil.copytree(real, tree["outside"] / "store")
    (tree["stores"] / "evil-store").unlink()
    (tree["stores"] / "evil-store").symlink_to(tree["outside"] / "store", target_is_directory=True)

    accessed.clear()  # setup wrote the outside copy; from here on nothing may touch it
    ckpts = Path(store_roots["EQUILAB_CHECKPOINTS"])
    for c in ckpts.glob("*.safetensors"):
        assert find_store(c, "shapes", "test", tree["stores"]) is None
    assert [p for p in touched(accessed, tree) if "manifest" in p] == []


# ---------------------------------------------------------------- HTML and server settings

RAW_HTML = re.compile(r"unsafe_allow_html\s*=\s*True|st\.html\(|components\.v1|components\.html")


def test_app_renders_no_raw_html_but_the_escaped_thumbnail_grid():
    uses = [
        f"{p.relative_to(REPO)}: {line.strip()}"
        for p in sorted((REPO / "app").rglob("*.py"))
        for line in p.read_text().splitlines()
        if RAW_HTML.search(line)
    ]
    # every string goes through Streamlit's escaping markdown/text elements, except the thumbnail grid's HTML
    assert uses == ["app/ui.py: st.html(thumb_grid_html(images, captions, width))"]

    img = np.zeros((4, 4, 3), np.uint8)
    out = thumb_grid_html([img, img], ["<script>alert(1)</script>", '" onerror="x'], width=56)
    assert "<script>" not in out and "&lt;script&gt;" in out and '" onerror' not in out
    assert out.count("<img ") == 2 and out.count('src="data:image/png;base64,') == 2


def test_config_binds_localhost_and_caps_uploads():

    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["maxUploadSize"] * 1024 * 1024 == ui.MAX_UPLOAD_BYTES  # MB, as the app says
    assert cfg["server"]["enableXsrfProtection"] is True
    assert cfg["browser"]["gatherUsageStats"] is False
    # what Streamlit itself reads from that file when started in the repository
    shown = subprocess.run(
        [sys.executable, "-m", "streamlit", "config", "show"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")},
    ).stdout
    assert re.search(r'^address = "127\.0\.0\.1"$', shown, re.M), shown[-2000:]
    assert re.search(r"^maxUploadSize = 10$", shown, re.M)


def test_upload_over_the_cap_is_refused(open_app):
    at = open_app("lab")
    at.radio(key="lab_source").set_value("Upload").run()
    big = b"\x89PNG\r\n\x1a\n" + bytes(10 * 1024 * 1024)
    at.file_uploader(key="lab_upload").set_value(("big.png", big, "image/png")).run()
    assert not at.exception
    assert at.error and "over the 10 MB upload limit" in at.error[0].value


def test_upload_name_is_only_a_caption_never_a_path(tree, accessed, open_app):  # open_app last: its roots win
    """An upload is decoded from memory: a hostile file name is shown as text and opens nothing."""

    buf = io.BytesIO()
    Image.new("RGB", (24, 20), (10, 200, 30)).save(buf, format="PNG")
    at = open_app("lab")
    at.radio(key="lab_source").set_value("Upload").run()
    name = "../../outside/secret/metrics.jsonl"
    at.file_uploader(key="lab_upload").set_value((name, buf.getvalue(), "image/png")).run()
    assert not at.exception and not at.error
    assert at.get("image")[0].proto.imgs[0].caption == name
    assert touched(accessed, tree) == []


# ---------------------------------------------------------------- integers in the URL


@pytest.mark.parametrize(
    ("page", "name", "key", "text", "want"),
    [
        ("retrieval", "q", "ret_idx", "-1", 0),
        ("retrieval", "q", "ret_idx", "99999999999999999999", 159),
        ("retrieval", "q", "ret_idx", "abc", 0),
        ("retrieval", "q", "ret_idx", "1e3", 0),
        ("map", "item", "map_item", "-5", 0),
        ("map", "item", "map_item", "99999999999999999999", 159),
        ("lab", "idx", "lab_idx", "160", 159),
        ("lab", "idx", "lab_idx", "%00", 0),
    ],
)
def test_url_integers_are_clamped_or_refused_with_a_warning(open_app, page, name, key, text, want):
    at = open_app(page, **{name: text})
    assert not at.exception, [e.message for e in at.exception]
    assert at.number_input(key=key).value == want
    assert any(name in w.value and "from the URL" in w.value for w in at.warning), [
        w.value for w in at.warning
    ]
    assert at.query_params[name] == str(want)  # the URL now holds what is shown
