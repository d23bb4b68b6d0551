"""The map as a density image (issue 16), in Chromium: a box dragged over it selects exactly the items whose stored
coordinates lie inside the box, drawn or not; zooming to the selection draws them as points."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from engine.store.format import open_store
from engine.store.select import box_ids


@pytest.fixture
def page(browser, server, idle):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(90_000)
    yield pg
    ctx.close()


def test_box_on_the_density_map_selects_the_items_inside(page, server, idle, app_env):
    page.goto(f"{server}/map")
    page.get_by_role("heading", name="Map").first.wait_for()
    idle(page)
    cap = page.get_by_test_id("stNumberInput").filter(has_text="Max points drawn").locator("input")
    cap.fill("100")
    cap.press("Enter")
    page.get_by_text(re.compile(r"Showing all \d+ items in view .* as a density image")).wait_for()
    idle(page)
    expect(page.locator("[data-testid=stPlotlyChart] svg image").first).to_be_attached()  # the density image

    query = parse_qs(urlparse(page.url).query)  # the URL carries the sidebar's model and space
    model, space = query["model"][0], query["space"][0]
    store = open_store(Path(app_env["EQUILAB_STORES"]) / f"{model}-shapes-test")
    xy = store.coords(space, "pca2")  # the fixture stores have no UMAP: the map shows PCA

    drag = page.locator("[data-testid=stPlotlyChart] .nsewdrag").first
    b = drag.bounding_box()
    px = [round(b["width"] * f) for f in (0.2, 0.7)]
    py = [round(b["height"] * f) for f in (0.2, 0.7)]
    page.mouse.move(b["x"] + px[0], b["y"] + py[0])
    page.mouse.down()
    page.mouse.move(b["x"] + (px[0] + px[1]) / 2, b["y"] + (py[0] + py[1]) / 2, steps=5)
    page.mouse.move(b["x"] + px[1], b["y"] + py[1], steps=5)
    page.mouse.up()
    heading = page.get_by_text(re.compile(r"Selection: [\d,]+ items"))
    heading.wait_for()
    idle(page)
    # The box in data coordinates, as Plotly converts the dragged pixels (its axes' own pixel-to-data maps).
    x0, x1, y0, y1 = page.evaluate(
        """([px, py]) => { const l = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot')._fullLayout;
            return [l.xaxis.p2d(px[0]), l.xaxis.p2d(px[1]), l.yaxis.p2d(py[0]), l.yaxis.p2d(py[1])]; }""",
        [px, py],
    )
    want = box_ids(xy, (x0, x1), (y0, y1))
    # pixels are whole numbers but the mouse may land a fraction off: tolerate items within half a pixel of an edge
    sx, sy = abs(x1 - x0) / abs(px[1] - px[0]), abs(y1 - y0) / abs(py[1] - py[0])
    inner = box_ids(xy, (min(x0, x1) + sx, max(x0, x1) - sx), (min(y0, y1) + sy, max(y0, y1) - sy))
    outer = box_ids(xy, (min(x0, x1) - sx, max(x0, x1) + sx), (min(y0, y1) - sy, max(y0, y1) + sy))
    got = int(heading.inner_text().split()[1].replace(",", ""))
    assert 1 < len(inner) <= got <= len(outer), (got, len(want), len(inner), len(outer))
    page.locator(".eq-thumbs figcaption").first.wait_for()  # st.html's renderer can land after the run ends
    captions = page.locator(".eq-thumbs figcaption").all_inner_texts()
    shown = {int(c) for c in captions if c.strip().isdigit()}
    assert shown and shown <= set(outer.tolist())  # the grid shows selected items only

    page.get_by_role("button", name="Zoom to selection").click()
    page.get_by_text(re.compile(r"Showing \d+ of \d+ items; metrics use the full store")).wait_for()
    idle(page)
    expect(page.locator("[data-testid=stPlotlyChart] .layer-below image")).to_have_count(
        0
    )  # points, no image
