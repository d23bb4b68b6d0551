"""Two browser sessions on one server do not see each other's uploads or map selections.

Two independent Playwright contexts (separate cookies, storage and websocket sessions) on one `streamlit run`
server: what one uploads or selects must never show up in the other, in either direction. Waits on DOM
conditions only.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

ONE, TWO = "session-one.png", "session-two.png"


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def sessions(browser, server, idle):
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    pages = []
    for ctx in contexts:
        pg = ctx.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(server)
        pg.get_by_role("heading", name="Augmentation lab").first.wait_for()
        idle(pg)
        pages.append(pg)
    yield pages
    for ctx in contexts:
        ctx.close()


def upload(page, idle, name: str, data: bytes) -> None:
    radio = page.get_by_test_id("stRadio").filter(has_text="Dataset")
    if not radio.get_by_role("radio", name="Upload").is_checked():
        radio.get_by_text("Upload").click()
    field = page.locator("[data-testid='stFileUploader'] input[type=file]")
    field.wait_for(state="attached")
    field.set_input_files(files=[{"name": name, "mimeType": "image/png", "buffer": data}])
    page.get_by_test_id("stImageCaption").filter(has_text=name).wait_for()  # the lab shows the upload
    page.get_by_test_id("stMetric").filter(has_text="|Δ|").first.wait_for()
    idle(page)


def delta(page) -> str:
    m = page.get_by_test_id("stMetric").filter(has_text="|Δ|").first
    return m.get_by_test_id("stMetricValue").inner_text()


def go_to(page, idle, title: str) -> None:
    """Switch page inside the same session (sidebar link; a URL load would start a new session)."""
    page.get_by_test_id("stSidebarNavLink").filter(has_text=title).click()
    page.get_by_role("heading", name=title).first.wait_for()
    idle(page)


def box_select(page) -> None:
    chart = page.get_by_test_id("stPlotlyChart").first
    chart.locator(".nsewdrag").first.wait_for()
    box = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.05, box["y"] + box["height"] * 0.05)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.95, box["y"] + box["height"] * 0.95, steps=10)
    page.mouse.up()


def test_uploads_and_selections_stay_in_their_session(sessions, idle):
    one, two = sessions

    # session 1 uploads; session 2 still shows the dataset image and an empty uploader
    upload(one, idle, ONE, png(1))
    expect(
        two.get_by_test_id("stRadio").filter(has_text="Dataset").get_by_role("radio", name="Dataset")
    ).to_be_checked()
    expect(two.get_by_test_id("stImageCaption").filter(has_text=re.compile(r"^#0 · "))).to_have_count(1)
    two.get_by_test_id("stRadio").filter(has_text="Dataset").get_by_text("Upload").click()
    two.get_by_text("Pick a dataset image or upload one.").wait_for()  # its own uploader: nothing in it
    idle(two)
    expect(two.get_by_text(ONE)).to_have_count(0)
    expect(two.get_by_test_id("stFileUploaderFile")).to_have_count(0)

    # session 2 uploads its own image; session 1, rerun by a widget, still has only its own
    upload(two, idle, TWO, png(2))
    expect(two.get_by_text(ONE)).to_have_count(0)
    before = delta(one)
    one.get_by_test_id("stCheckbox").filter(has_text="Grayscale").click()
    expect(
        one.get_by_test_id("stMetric").filter(has_text="|Δ|").first.get_by_test_id("stMetricValue")
    ).not_to_have_text(before)
    idle(one)
    expect(one.get_by_test_id("stImageCaption").filter(has_text=ONE)).to_have_count(1)
    expect(one.get_by_text(TWO)).to_have_count(0)

    # session 1 selects points on the map; session 2's map has no selection
    go_to(one, idle, "Map")
    box_select(one)
    one.get_by_text(re.compile(r"Selection: \d+ items")).wait_for()
    go_to(two, idle, "Map")
    two.get_by_test_id("stPlotlyChart").first.locator(".nsewdrag").first.wait_for()
    expect(two.get_by_text(re.compile(r"Selection: \d+ items"))).to_have_count(0)
    expect(one.get_by_text(re.compile(r"Selection: \d+ items"))).to_have_count(1)
