"""Real-browser end-to-end: every page opens; lab slider, retrieval, map box-select and uploads work.

Drives Debian's Chromium through Playwright's sync API against a `streamlit run` subprocess pointed at the tiny
fixture checkpoints/stores (tests/app/conftest.py). Waits on DOM conditions only.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

PAGES = {
    "": "Augmentation lab",
    "map": "Map",
    "retrieval": "Retrieval",
    "compare": "Compare models",
    "training": "Training curves",
    "about": "About EquiLab",
}


@pytest.fixture
def page(browser, server, idle, artifacts):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(90_000)
    pg.idle = idle  # Streamlit's "connected and not running" signal
    pg.artifacts = artifacts
    yield pg
    ctx.close()


def open_page(page, url: str, path: str) -> None:
    page.goto(f"{url}/{path}")
    page.get_by_role("heading", name=PAGES[path.split("?")[0]]).first.wait_for()
    page.idle(page)


def metric_value(page, label: str) -> str:
    m = page.get_by_test_id("stMetric").filter(has_text=label).first
    return m.get_by_test_id("stMetricValue").inner_text()


def test_every_page_opens_without_an_exception(page, server):
    for path, title in PAGES.items():
        open_page(page, server, path)
        assert page.get_by_test_id("stException").count() == 0, path
        page.screenshot(path=str(page.artifacts / f"page-{path or 'lab'}.png"))
        assert page.get_by_role("heading", name=title).first.is_visible()


def test_lab_slider_moves_the_displacement(page, server):
    open_page(page, server, "")
    page.get_by_test_id("stMetric").filter(has_text="|Δ|").first.wait_for()
    before = metric_value(page, "|Δ|")
    page.get_by_test_id("stSlider").filter(has_text="Hue shift").get_by_role("slider").first.focus()
    for _ in range(10):  # keyboard on the focused thumb: no re-resolving while the app reruns
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        """([before]) => {
            const m = [...document.querySelectorAll('[data-testid="stMetric"]')]
                .find(e => e.innerText.includes('|Δ|'));
            return m && m.querySelector('[data-testid="stMetricValue"]').innerText !== before;
        }""",
        arg=[before],
    )
    page.idle(page)
    assert metric_value(page, "|Δ|") != before
    page.screenshot(path=str(page.artifacts / "lab-hue.png"), full_page=True)


def test_retrieval_shows_k_thumbnails(page, server):
    open_page(page, server, "retrieval?q=3")
    page.get_by_text("Top 8").wait_for()
    page.get_by_test_id("stMetric").filter(has_text="Query latency").wait_for()
    # the query image plus k neighbours, each neighbour captioned with its score and label match; the
    # neighbour grid renders after the "Top 8" header, so wait for the count (expect retries, then fails)
    expect(page.get_by_test_id("stImageContainer")).to_have_count(1 + 8, timeout=30_000)
    caps = page.get_by_test_id("stImageCaption").all_inner_texts()
    assert sum(bool(re.search(r"\d\.\d{3} [✓✗]", c)) for c in caps) == 8


def test_map_box_selection_opens_grid_and_table(page, server):
    open_page(page, server, "map")
    chart = page.get_by_test_id("stPlotlyChart").first
    chart.locator(".nsewdrag").first.wait_for()
    box = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.05, box["y"] + box["height"] * 0.05)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=10)
    page.mouse.move(box["x"] + box["width"] * 0.95, box["y"] + box["height"] * 0.95, steps=10)
    page.mouse.up()
    page.get_by_text(re.compile(r"Selection: \d+ items")).wait_for()
    page.idle(page)
    assert page.get_by_test_id("stDataFrame").count() >= 2  # selection table + inspected item
    # the selection's thumbnails arrive inline with the page (no media request left to finish), one per caption;
    # st.html's renderer is a lazily loaded chunk that can land after the run ends, so wait for the count
    thumbs = page.locator(".eq-thumbs img")
    n = int(page.get_by_text(re.compile(r"Selection: \d+ items")).inner_text().split()[1].replace(",", ""))
    expect(thumbs).to_have_count(min(n, 48), timeout=30_000)
    assert page.locator(".eq-thumbs figcaption").count() == min(n, 48)
    srcs = thumbs.evaluate_all("els => els.map(e => [e.src.slice(0, 22), e.complete && e.naturalWidth > 0])")
    assert all(src == "data:image/png;base64," and drawn for src, drawn in srcs), srcs[:3]
    page.screenshot(path=str(page.artifacts / "map-selection.png"), full_page=True)


def png_bytes(mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_upload_good_then_corrupt_image(page, server):
    open_page(page, server, "")
    page.get_by_test_id("stRadio").filter(has_text="Dataset").get_by_text("Upload").click()
    upload = page.locator("[data-testid='stFileUploader'] input[type=file]")
    upload.wait_for(state="attached")
    upload.set_input_files(files=[{"name": "good.png", "mimeType": "image/png", "buffer": png_bytes()}])
    page.get_by_text("good.png").first.wait_for()
    page.get_by_test_id("stMetric").filter(has_text="|Δ|").first.wait_for()
    page.idle(page)
    assert page.get_by_test_id("stAlertContentError").count() == 0
    bad = png_bytes()[:60]  # truncated PNG
    upload.set_input_files(files=[{"name": "broken.png", "mimeType": "image/png", "buffer": bad}])
    err = page.get_by_test_id("stAlertContentError").filter(has_text="broken.png")
    err.wait_for()
    assert "Cannot use broken.png" in err.inner_text()
    page.screenshot(path=str(page.artifacts / "upload-error.png"))


def slider_values(page) -> dict[str, float]:
    """What the browser shows on every lab slider (label → the range input's value)."""
    out = {}
    for s in page.get_by_test_id("stSlider").all():
        label = s.get_by_test_id("stWidgetLabel").inner_text().strip()
        out[label] = float(s.locator("input[type=range]").first.get_attribute("value"))
    return out


def test_lab_sliders_keep_their_values_through_an_upload(page, server):
    """Switching to Upload hides the sliders until a file arrives; when they come back the browser must show the
    values the server computes with (identity), and the next widget change must not send other values back."""
    open_page(page, server, "")
    page.get_by_test_id("stRadio").filter(has_text="Dataset").get_by_text("Upload").click()
    upload = page.locator("[data-testid='stFileUploader'] input[type=file]")
    upload.wait_for(state="attached")
    wide = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 160, 3), dtype=np.uint8))
    buf = io.BytesIO()
    wide.save(buf, format="PNG")
    upload.set_input_files(files=[{"name": "wide.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.get_by_test_id("stMetric").filter(has_text="|Δ|").first.wait_for()
    page.idle(page)
    assert metric_value(page, "|Δ|") == "0.0000"
    shown = slider_values(page)
    assert shown["Crop scale"] == 1.0 and shown["Brightness"] == 1.0 and shown["Hue shift"] == 0.0, shown
    page.get_by_test_id("stCheckbox").filter(has_text="Horizontal flip").locator("label").click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stMetric"]')]
            .some(e => e.innerText.includes('|Δ|') && !e.innerText.includes('0.0000'))"""
    )
    page.idle(page)
    after = slider_values(page)
    assert after == shown, after  # only the flip changed: no slider jumped to its minimum
    page.screenshot(path=str(page.artifacts / "lab-upload-flip.png"), full_page=True)
