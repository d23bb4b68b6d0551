"""The whole app as a new user meets it, in Chromium: every page with every shipped shapes model, the broken-image
corpus through both upload widgets, odd URL values and nested paths; never an exception box or a traceback, and
offline means offline (every request goes to the local server, no 404).

The server serves copies of checkpoints/shapes-*.json with small stores built once per session
(tests/browser/conftest.py: shipped_env). ``EQUILAB_SCREENSHOTS=1`` also saves each page, as shapes-equimod shows
it, to docs/screenshots/<page>.png (not in CI by default).
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
MODELS = sorted(p.stem for p in (REPO / "checkpoints").glob("shapes-*.json"))  # as conftest's shipped_env
MODEL_PAGES = ("lab", "map", "retrieval", "compare")  # pages that open the model's store
OTHER_PAGES = ("training", "add-model", "about")
SCREENSHOTS = REPO / "docs" / "screenshots"
SCREENSHOT_MODEL = "shapes-equimod"
# Streamlit's client looks for its server under the page's own path first (/<page>/_stcore/health, then
# /_stcore/health): those two 404s are its base-path probe, not a missing resource.
PROBE = re.compile(r"/[^/]+(/[^/]+)*/_stcore/(health|host-config)$")


class Recorder:
    """Every request, failed response, console error and page error of one browser context."""

    def __init__(self, page, base: str) -> None:
        self.base = urlparse(base)
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("response", self._response)
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _response(self, r) -> None:
        if r.status >= 400 and not PROBE.search(urlparse(r.url).path):
            self.failed.append(f"{r.status} {r.url}")

    def _console(self, m) -> None:
        where = (m.location or {}).get("url", "")
        probe = PROBE.search(urlparse(where).path or "")
        expected = "does not seem to exist" in m.text  # Streamlit's own "page not found" note
        if m.type == "error" and not probe and not expected:
            self.errors.append(f"console: {m.text[:300]} ({where})")

    def remote(self) -> list[str]:
        """Requests that left the machine (anything but this server, data: and blob: URLs)."""
        out = []
        for u in self.requests:
            p = urlparse(u)
            if p.scheme in ("data", "blob"):
                continue
            if p.hostname not in ("127.0.0.1", "localhost") or p.port != self.base.port:
                out.append(u)
        return out

    def assert_clean(self) -> None:
        assert self.remote() == [], self.remote()[:10]
        assert self.failed == [], self.failed[:10]
        assert self.errors == [], self.errors[:10]


@pytest.fixture
def walk(browser, shipped_server, idle):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    rec = Recorder(pg, shipped_server)
    yield pg, rec, shipped_server
    ctx.close()


def settle(page, idle) -> None:
    """The page has drawn its title and no script run is in progress."""
    page.locator("[data-testid='stMain'] h1").first.wait_for()
    idle(page, 180_000)


def assert_no_exception(page, where: str) -> None:
    assert page.get_by_test_id("stException").count() == 0, where
    body = page.locator("body").inner_text()
    assert "Traceback" not in body, (where, body[body.find("Traceback") :][:800])


def visit(page, idle, base: str, path: str) -> None:
    page.goto(f"{base}/{path}")
    settle(page, idle)
    assert_no_exception(page, path)


# ---------------------------------------------------------------- every page, every model


def test_every_page_with_every_shipped_model_offline(walk, idle):
    page, rec, base = walk
    assert len(MODELS) >= 4, MODELS
    shots = os.environ.get("EQUILAB_SCREENSHOTS") == "1"
    for model in MODELS:
        for name in MODEL_PAGES:
            visit(page, idle, base, f"{name}?model={model}")
            assert f"model={model}" in page.url, (
                name,
                page.url,
            )  # the page kept the model it was opened with
            if shots and model == SCREENSHOT_MODEL:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    for name in OTHER_PAGES:
        visit(page, idle, base, name)
        if shots:
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    rec.assert_clean()


def test_lab_and_retrieval_share_the_space_so_the_lab_view_is_a_query(walk, idle):
    page, rec, base = walk
    visit(page, idle, base, f"lab?model={SCREENSHOT_MODEL}")
    space = page.get_by_test_id("stSelectbox").filter(has_text="Embedding space").first.inner_text()
    page.get_by_test_id("stSidebarNav").get_by_text("Retrieval").click()
    page.get_by_role("heading", name="Retrieval").first.wait_for()
    idle(page, 180_000)
    assert page.get_by_test_id("stSelectbox").filter(has_text="Embedding space").first.inner_text() == space
    page.get_by_test_id("stRadio").filter(has_text="Lab view").get_by_text("Lab view").click()
    page.get_by_test_id("stMetric").filter(has_text="Query latency").wait_for()
    idle(page, 180_000)
    assert page.get_by_text("revisit the lab").count() == 0
    assert_no_exception(page, "retrieval lab view")
    rec.assert_clean()


# ---------------------------------------------------------------- the broken-image corpus


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(h: int, w: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(h * 7 + w).integers(0, 256, (h, w, 3), dtype=np.uint8))


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (a decompression bomb without the pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return encode(noise(32, 64), "JPEG", exif=exif.tobytes())


def corpus() -> dict[str, bytes]:
    """Broken, hostile and awkward uploads (as tests/engine/data/test_images.py makes them), small enough to walk."""
    good = encode(noise(48, 48), "PNG")
    return {
        "empty.png": b"",
        "random-bytes.jpg": np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "truncated.png": good[: len(good) // 2],
        "bomb-header.png": png_header_only(20_000, 20_000),
        "wide-10000x10.png": encode(noise(10, 10_000), "PNG"),
        "tall-10x10000.png": encode(noise(10_000, 10), "PNG"),
        "one-pixel.png": encode(noise(1, 1), "PNG"),
        "cmyk.jpg": encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"),
        "gray16.png": encode(Image.fromarray((np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)), "PNG"),
        "exif-rotated.jpg": exif_rotated(),
    }


@pytest.mark.parametrize(("path", "radio"), [("lab", "Image"), ("retrieval", "Query")])
def test_broken_image_corpus_through_the_upload_widget(walk, idle, path, radio):
    page, rec, base = walk
    visit(page, idle, base, f"{path}?model={SCREENSHOT_MODEL}")
    page.get_by_test_id("stRadio").filter(has_text="Upload").get_by_text("Upload").click()
    field = page.locator("[data-testid='stFileUploader'] input[type=file]")
    field.wait_for(state="attached")
    idle(page, 180_000)
    for name, data in corpus().items():
        field.set_input_files(files=[{"name": name, "mimeType": "image/png", "buffer": data}])
        done = (
            page.get_by_test_id("stAlertContentError")
            .filter(has_text=name)
            .or_(page.get_by_test_id("stImageCaption").filter(has_text=name))
            .or_(page.get_by_test_id("stException"))
        )
        done.first.wait_for()
        idle(page)
        assert_no_exception(page, f"{path} upload {name}")
    rec.assert_clean()


# ---------------------------------------------------------------- URL values and paths


def url_cases() -> list[tuple[str, str]]:
    """(page, query) covering every URL parameter the pages read (ui.url_choice / ui.url_int / ui.qp)."""
    big = "99999999999999999999"
    return [
        ("lab", "idx=-1&model=../../etc/passwd&dataset=nope&space=nope"),
        ("lab", f"idx={big}&model=&space=%00"),
        ("lab", "idx=abc"),
        ("map", "item=-5&space=../../x&dataset=../shapes"),
        ("map", f"item={big}&model=%2Fetc%2Fpasswd"),
        ("retrieval", "q=-1"),
        ("retrieval", f"q={big}&space=backbone"),
        ("retrieval", "q=abc&model=evil"),
        ("compare", "model_b=nope&space=nope"),
        ("compare", f"model={SCREENSHOT_MODEL}&model_b={SCREENSHOT_MODEL}"),
        ("about", f"space=nope&item={big}&model=evil"),
        ("lab", "dataset=cifar10"),  # not shipped: a clear error naming EQUILAB_DATA_ROOT, no stale box
    ]


def test_out_of_range_and_malformed_url_values(walk, idle):
    page, rec, base = walk
    for path, query in url_cases():
        visit(page, idle, base, f"{path}?{query}")
    assert page.get_by_test_id("stAlertContentError").filter(has_text="EQUILAB_DATA_ROOT").count() == 1
    assert page.get_by_text("Building the").count() == 0
    assert "--data-root" in page.get_by_test_id("stCode").first.inner_text()
    rec.assert_clean()


@pytest.mark.parametrize(
    ("path", "title"),
    [("a/b/c", "Augmentation lab"), ("map/extra/deep?item=3", "Map"), ("nope", "Augmentation lab")],
)
def test_nested_and_unknown_paths_open_a_page(walk, idle, path, title):
    page, rec, base = walk
    visit(page, idle, base, path)
    page.get_by_role("heading", name=title).first.wait_for()
    if not path.startswith("map"):
        assert page.get_by_text("Page not found").count() >= 1  # Streamlit's dialog over the default page
    rec.assert_clean()


def test_the_walk_covers_every_url_parameter_the_app_reads():
    """Each parameter name the pages read from the URL is in :func:`url_cases` (grep of app/)."""
    read = set()
    for p in (REPO / "app").rglob("*.py"):
        text = p.read_text()
        read |= set(re.findall(r"(?:qp|url_choice|url_int)\(\s*\"(\w+)\"", text))
    tried = {k for _, q in url_cases() for k in re.findall(r"(\w+)=", q)}
    assert read and read <= tried, read - tried
