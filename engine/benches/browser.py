"""Dashboard interactions measured in Chromium: widget change -> page settled, first page in a new tab, first open.

Builds stores of the shipped shapes checkpoints (``checkpoints/shapes-*.json``) into a temporary root (or
``--root``), starts ``streamlit run app/serve.py`` on them and drives Debian's Chromium through Playwright. A
measurement is the wall time from the widget change (key press, click, the release of a selection drag, the click
on an option of an open drop-down) until the page is *settled*: Streamlit's script state is ``notRunning`` **and**
the DOM shows the change the widget causes (a new |Δ|, a new selection count, a colour bar). The gesture before a
change (opening a drop-down; pressing and moving for a drag, which Plotly answers by drawing the growing selection in
the browser) is not part of its time; a drag's is measured on its own, as the seconds the browser takes per mouse
move ("map drag: one mouse move drawn"; software WebGL on a machine without a GPU). Every interaction is measured
over ``--rounds`` rounds; the table gives the first round (first use: caches cold), the median and the p95, against
the target of issues 16/17.

``--cold`` also measures issue 16's first open: an empty stores root and data cache, a fresh server, the time until
the default page shows its numbers (the app builds the default model's store itself).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.benches.common import print_table, write_results
from engine.lab.models import load_model
from engine.lab.precompute import precompute_maps, precompute_store
from engine.store.build import ensure_store
from engine.store.format import StoreOptions

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",  # WebGL (Scattergl) without a GPU
]
DEFAULT_MODELS = ("shapes-equimod", "shapes-simclr")  # the app's default A and a same-dataset B
# measurement -> target seconds (issue 17: < 1 s per interaction, < 3 s first page; issue 16: < 60 s first open)
TARGETS: dict[str, float] = {
    "first open, clean state (server start -> lab numbers)": 60.0,
    "server start -> lab numbers (stores built)": 60.0,
    "first page in a new browser tab": 3.0,
    "lab slider": 1.0,
    "lab seed": 1.0,
    "map colour change": 1.0,
    "map box select": 1.0,
    "map lasso": 1.0,
    "map colour by displacement": 1.0,
    "compare selection in B": 1.0,
    "map drag: one mouse move drawn": 0.1,  # the selection drawn while dragging (Plotly, in the browser)
    "retrieval query change": 1.0,
}
SETTLED = "document.querySelector(\"[data-testid='stApp']\")?.getAttribute('data-test-script-state') === 'notRunning'"
# the text of the first metric labelled |Δ| (the lab's first view), or '' when there is none yet
DELTA_JS = """(() => { const m = [...document.querySelectorAll('[data-testid="stMetric"]')]
    .find(e => e.innerText.includes('|Δ|'));
    return m ? m.querySelector('[data-testid="stMetricValue"]').innerText : ''; })()"""
# the selection's headline ("Selection: N items" on the map, "N selected; their mean overlap…" on Compare) and the
# captions of the map's thumbnail grid (the selected ids), or '' when nothing is selected or the map's grid does not
# yet show its min(N, GRID_THUMBS) thumbnails, each drawn (a half-rendered page is not settled)
GRID_THUMBS = 48  # app/views/map.py GRID
SELECTION_JS = """(() => { const h = [...document.querySelectorAll('h3, p')]
    .find(e => /^(Selection: [\\d,]+ items|[\\d,]+ selected; their mean)/.test(e.innerText));
    if (!h) return '';
    const thumbs = [...document.querySelectorAll('.eq-thumbs figure')];
    const m = /^Selection: ([\\d,]+) items/.exec(h.innerText);
    if (m && (thumbs.length !== Math.min(Number(m[1].replace(/,/g, '')), GRID)
              || !thumbs.every(f => { const i = f.querySelector('img'); return i && i.complete && i.naturalWidth > 0; })))
        return '';
    return h.innerText + '|' + thumbs.map(f => f.querySelector('figcaption').innerText).join(','); })()""".replace(
    "GRID", str(GRID_THUMBS)
)
COLOURBAR_JS = (
    "(() => [...document.querySelectorAll('.colorbar .cbtitle')].map(e => e.textContent).join('|'))()"
)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root", default=None, help="roots folder (checkpoints/, runs/, stores/); default a temp dir"
    )
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="shipped shapes checkpoints to serve")
    p.add_argument("--items", type=int, default=None, help="test items per store (default: the whole split)")
    p.add_argument("--rounds", type=int, default=5, help="measured rounds per interaction")
    p.add_argument(
        "--no-build", action="store_true", help="serve the stores already under --root as they are"
    )
    p.add_argument("--no-umap", action="store_true", help="build the stores without UMAP (PCA maps only)")
    p.add_argument(
        "--no-precompute", action="store_true", help="do not fit the lab predictors before serving"
    )
    p.add_argument("--cold", action="store_true", help="also measure the first open from a clean state")
    p.add_argument("--only", default=None, help="comma-separated subset: lab,map,compare,retrieval,tab")


def run(args: argparse.Namespace) -> int:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 (a dev-only dependency)
    except ImportError:
        print("error: bench browser needs playwright (pip install -r requirements-dev.txt)", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"error: bench browser drives Debian's chromium at {CHROMIUM} (apt-get install chromium)")
        return 2
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="equilab-bench-browser-"))
    models = [m for m in args.models.split(",") if m]
    only = set(args.only.split(",")) if args.only else {"lab", "map", "compare", "retrieval", "tab"}
    results: dict[str, list[float]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            if args.cold:
                results["first open, clean state (server start -> lab numbers)"] = [
                    first_open(browser, root / "cold", models)
                ]
            env = prepare_roots(root, models, args)
            results.update(measure_all(browser, env, args.rounds, only))
        finally:
            browser.close()
    rows = summarise(results)
    print_table(rows, f"bench browser: widget change -> page settled, {args.rounds} rounds ({root})")
    write_results(args.out, {"rows": rows, "seconds": results, "root": str(root), "rounds": args.rounds})
    return 0


# ---------------------------------------------------------------- roots, stores, server


def roots_env(root: Path) -> dict[str, str]:
    """The env vars pointing the app at ``root``'s checkpoints/, runs/, stores/ (and an empty data root)."""
    dirs = {k: root / k for k in ("checkpoints", "runs", "stores", "no-data")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return {
        "EQUILAB_CHECKPOINTS": str(dirs["checkpoints"]),
        "EQUILAB_RUNS": str(dirs["runs"]),
        "EQUILAB_STORES": str(dirs["stores"]),
        "EQUILAB_DATA_ROOT": str(dirs["no-data"]),
    }


def copy_checkpoints(root: Path, models: list[str]) -> None:
    """Copies (links out of a root are refused by the app) of the shipped checkpoints ``models``."""
    for label in models:
        for ext in ("safetensors", "json"):
            src = REPO / "checkpoints" / f"{label}.{ext}"
            if not src.is_file():
                raise SystemExit(f"error: no shipped checkpoint {src}")
            shutil.copy(src, root / "checkpoints" / src.name)


def prepare_roots(root: Path, models: list[str], args: argparse.Namespace) -> dict[str, str]:
    """Roots with the checkpoints and their built stores (and, unless told not to, their lab predictors)."""
    env = roots_env(root)
    if args.no_build:
        return env
    copy_checkpoints(root, models)
    for label in models:
        ckpt = root / "checkpoints" / f"{label}.safetensors"
        t0 = time.perf_counter()
        path = ensure_store(
            ckpt,
            "shapes",
            "test",
            store_root=env["EQUILAB_STORES"],
            options=StoreOptions(umap=not args.no_umap),
            data_options={"size": args.items} if args.items else None,
        )
        if not args.no_precompute:
            model = load_model(ckpt)[0]
            precompute_store(path, model)
            precompute_maps(path, model)
        print(f"store {path.name}: ready in {time.perf_counter() - t0:.1f} s", flush=True)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """``streamlit run app/serve.py`` on a free port with ``env`` added; returns (process, base URL) once healthy."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app/serve.py", "--server.headless", "true"]
    cmd += [
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    cmd += ["--server.fileWatcherType", "none", "--global.developmentMode", "false"]
    out = open(log, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"error: streamlit exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return proc, url
        except OSError:
            time.sleep(0.1)  # not bound yet: polling a port, not synchronising
    proc.terminate()
    raise SystemExit(f"error: {url} not healthy after 120 s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


# ---------------------------------------------------------------- settling


def settle(page, predicate: str = "true", timeout_s: float = 600) -> None:
    """Wait until the script state is notRunning and the JavaScript expression ``predicate`` is true."""
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=timeout_s * 1e3
    )
    page.wait_for_function(f"() => ({SETTLED}) && ({predicate})", timeout=timeout_s * 1e3, polling=50)


INTERACTION_TIMEOUT_S = 60


def timed(page, act: Callable[[], None], predicate: str, prepare: Callable[[], None] | None = None) -> float:
    """Seconds from ``act()`` to :func:`settle` on ``predicate`` (``prepare()``, e.g. the moves of a drag before
    its release, runs first, untimed); NaN when the page does not settle with the expected change within
    INTERACTION_TIMEOUT_S."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: PLC0415 (dev-only)

    if prepare is not None:
        prepare()
    t0 = time.perf_counter()
    act()
    try:
        settle(page, predicate, INTERACTION_TIMEOUT_S)
    except PlaywrightTimeout:
        print(f"  no settled change within {INTERACTION_TIMEOUT_S} s: {predicate[:120]}", flush=True)
        return float("nan")
    return time.perf_counter() - t0


def changed(expr: str, before: str) -> str:
    """A predicate: the JavaScript expression ``expr`` is non-empty and differs from ``before``."""
    return f"(() => {{ const v = {expr}; return v !== '' && v !== {before!r}; }})()"


def value(page, expr: str) -> str:
    return page.evaluate(f"() => {expr}")


def new_page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(600_000)
    return ctx, page


def open_lab(page, url: str) -> None:
    page.goto(url + "/")
    settle(page, f"{DELTA_JS} !== ''")


# ---------------------------------------------------------------- the measurements


def first_open(browser, root: Path, models: list[str]) -> float:
    """Seconds from a fresh server start on an empty stores root and data cache to the lab showing |Δ|."""
    shutil.rmtree(root, ignore_errors=True)
    env = roots_env(root)
    copy_checkpoints(root, models)
    env["EQUILAB_CACHE"] = str(root / "cache")  # a clean clone: the generated dataset is not cached yet
    t0 = time.perf_counter()
    proc, url = start_server(env, root / "streamlit.log")
    try:
        ctx, page = new_page(browser)
        open_lab(page, url)
        dt = time.perf_counter() - t0
        ctx.close()
    finally:
        stop(proc)
    print(f"first open, clean state: {dt:.1f} s", flush=True)
    return dt


def measure_all(browser, env: dict[str, str], rounds: int, only: set[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    log = Path(env["EQUILAB_STORES"]).parent / "streamlit.log"
    t0 = time.perf_counter()
    proc, url = start_server(env, log)
    try:
        ctx, page = new_page(browser)
        open_lab(page, url)
        out.update(report({"server start -> lab numbers (stores built)": [time.perf_counter() - t0]}))
        ctx.close()
        if "tab" in only:
            tabs = rounds_of(rounds, lambda: new_tab(browser, url))
            out.update(report({"first page in a new browser tab": tabs}))
        ctx, page = new_page(browser)
        if "lab" in only:
            out.update(report(lab(page, url, rounds)))
        if "map" in only:
            out.update(report(map_page(page, url, rounds)))
        if "compare" in only:
            out.update(report(compare(page, url, rounds)))
        if "retrieval" in only:
            out.update(report(retrieval(page, url, rounds)))
        ctx.close()
    finally:
        stop(proc)
    return out


def report(results: dict[str, list[float]]) -> dict[str, list[float]]:
    """Print each measurement's seconds as soon as it is done (a long run shows where it is); returns them."""
    for name, secs in results.items():
        print(f"  {name}: " + ", ".join(f"{s:.2f}" for s in secs) + " s", flush=True)
    return results


def rounds_of(rounds: int, fn: Callable[[], float]) -> list[float]:
    return [fn() for _ in range(rounds)]


def new_tab(browser, url: str) -> float:
    ctx, page = new_page(browser)
    try:
        t0 = time.perf_counter()
        open_lab(page, url)
        return time.perf_counter() - t0
    finally:
        ctx.close()


def lab(page, url: str, rounds: int) -> dict[str, list[float]]:
    open_lab(page, url)
    thumb = page.get_by_test_id("stSlider").filter(has_text="Hue shift").get_by_role("slider").first
    slider = []
    for i in range(rounds):
        before = value(page, DELTA_JS)
        thumb.focus()
        key = "ArrowRight" if i % 2 == 0 else "ArrowLeft"
        slider.append(timed(page, lambda key=key: page.keyboard.press(key), changed(DELTA_JS, before)))
    page.get_by_test_id("stRadio").filter(has_text="Augmentation").get_by_text(
        "Sample random (seeded)"
    ).click()
    settle(page, f"{DELTA_JS} !== '' && !!document.querySelector('[data-testid=\"stNumberInput\"]')")
    seed_box = page.get_by_test_id("stNumberInput").filter(has_text="Seed").first
    seed = []
    for _ in range(rounds):
        before = value(page, DELTA_JS)
        up = seed_box.get_by_test_id("stNumberInputStepUp")
        seed.append(timed(page, up.click, changed(DELTA_JS, before)))
    return {"lab slider": slider, "lab seed": seed}


class Drag:
    """A mouse drag through ``path`` (fractions of the chart's plot area), in two parts: :meth:`moves` (press and
    move: the gesture itself, which Plotly answers by drawing the selection as it grows) and :meth:`release` (the
    selection is made: the widget change). ``move_s`` collects the seconds each move took the browser to process."""

    def __init__(self, page, chart, move_s: list[float] | None = None):
        self.page, self.chart, self.move_s = page, chart, move_s if move_s is not None else []

    def moves(self, path: list[tuple[float, float]], steps: int = 4) -> None:
        box = self.chart.locator(".nsewdrag").first.bounding_box()

        def at(fx: float, fy: float) -> tuple[float, float]:
            return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy

        mouse = self.page.mouse
        mouse.move(*at(*path[0]))
        mouse.down()
        for p in path[1:]:
            t0 = time.perf_counter()
            mouse.move(*at(*p), steps=steps)
            self.move_s.append((time.perf_counter() - t0) / steps)

    def release(self) -> None:
        self.page.mouse.up()

    def timed(self, path: list[tuple[float, float]], predicate: str) -> float:
        """Seconds from the release of a drag through ``path`` to the settled page showing ``predicate``."""
        return timed(self.page, self.release, predicate, prepare=lambda: self.moves(path))


def boxes(i: int) -> list[tuple[float, float]]:
    """Round ``i``'s box: alternately a large left and a small right one. They never overlap, so the selection
    always changes and a drag never starts inside the previous selection (Plotly would move that one instead)."""
    (x0, y0), (x1, y1) = ((0.05, 0.05), (0.45, 0.95)) if i % 2 == 0 else ((0.6, 0.3), (0.9, 0.7))
    return [(x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2), (x1, y1)]


def lassos(i: int) -> list[tuple[float, float]]:
    """Round ``i``'s lasso: an octagon, alternately large on the left and small on the right (disjoint, as boxes)."""
    (cx, r) = (0.28, 0.2) if i % 2 == 0 else (0.75, 0.12)
    angles = np.linspace(0, 2 * np.pi, 9)
    return [(cx + r * np.cos(a), 0.5 + r * np.sin(a)) for a in angles]


def open_select(page, label: str, option: str | None = None) -> None:
    """Open the drop-down of the select box labelled ``label`` (the gesture before a choice) and, given ``option``,
    wait until that option can be clicked (Playwright's actionability checks, without clicking)."""
    page.get_by_test_id("stSelectbox").filter(has_text=label).first.click()
    if option is not None:
        _option(page, option).click(trial=True)


def _option(page, option: str):
    return page.get_by_role("option", name=option, exact=True).first


def choose(page, option: str) -> None:
    """Click ``option`` in the open drop-down: the widget change."""
    _option(page, option).click()


def pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the select box labelled ``label``."""
    open_select(page, label)
    choose(page, option)


def timed_pick(page, label: str, option: str, predicate: str) -> float:
    """Seconds from the click on ``option`` (the drop-down opened first, untimed) to the settled change."""
    return timed(
        page, lambda: choose(page, option), predicate, prepare=lambda: open_select(page, label, option)
    )


def map_page(page, url: str, rounds: int) -> dict[str, list[float]]:
    page.goto(url + "/map")
    settle(page, "!!document.querySelector('[data-testid=\"stPlotlyChart\"] .nsewdrag')")
    chart = page.get_by_test_id("stPlotlyChart").first
    colour, box, lasso, disp, frames = [], [], [], [], []
    for _ in range(rounds):
        colour.append(timed_pick(page, "Colour by", "hue", f"{COLOURBAR_JS} === 'hue'"))
        colour.append(timed_pick(page, "Colour by", "label", f"{COLOURBAR_JS} === ''"))
    drag = Drag(page, chart, frames)
    for i in range(rounds):
        box.append(drag.timed(boxes(i), changed(SELECTION_JS, value(page, SELECTION_JS))))
    chart.hover()
    page.locator("[data-title='Lasso Select']").first.click()
    for i in range(rounds):
        lasso.append(drag.timed(lassos(i), changed(SELECTION_JS, value(page, SELECTION_JS))))
    for _ in range(rounds):
        disp.append(timed_pick(page, "Colour by", "displacement |Δ|", f"{COLOURBAR_JS}.includes('|Δ|')"))
        settle_after(page, lambda: pick(page, "Colour by", "label"), f"{COLOURBAR_JS} === ''")
    return {
        "map colour change": colour,
        "map box select": box,
        "map lasso": lasso,
        "map colour by displacement": disp,
        "map drag: one mouse move drawn": frames,
    }


def settle_after(page, act: Callable[[], None], predicate: str) -> None:
    act()
    settle(page, predicate)


def compare(page, url: str, rounds: int) -> dict[str, list[float]]:
    page.goto(url + "/compare")
    settle(page, "document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .nsewdrag').length >= 2")
    chart_b = page.get_by_test_id("stPlotlyChart").nth(1)
    drag = Drag(page, chart_b)
    out = [drag.timed(boxes(i), changed(SELECTION_JS, value(page, SELECTION_JS))) for i in range(rounds)]
    return {"compare selection in B": out}


def retrieval(page, url: str, rounds: int) -> dict[str, list[float]]:
    page.goto(url + "/retrieval?q=0")
    settle(page, "!!document.querySelector('[data-testid=\"stMetric\"]')")
    box = page.get_by_test_id("stNumberInput").filter(has_text="Image id").first
    out = []
    for i in range(rounds):
        out.append(
            timed(
                page,
                box.get_by_test_id("stNumberInputStepUp").click,
                f"new URLSearchParams(location.search).get('q') === '{i + 1}'",
            )
        )
    return {"retrieval query change": out}


# ---------------------------------------------------------------- the table


def summarise(results: dict[str, list[float]]) -> list[dict]:
    """One row per measurement: rounds that settled of those run, first round, median and p95 of the settled
    rounds, target, and whether the p95 meets the target (a round that never settled fails it)."""
    rows = []
    for name, target in TARGETS.items():
        s = np.asarray(results.get(name) or [], dtype=np.float64)
        if not len(s):
            continue
        ok = s[np.isfinite(s)]
        p95 = float(np.percentile(ok, 95)) if len(ok) else float("nan")
        rows.append(
            {
                "measurement": name,
                "settled": f"{len(ok)}/{len(s)}",
                "first_s": round(float(s[0]), 2),
                "median_s": round(float(np.median(ok)), 2) if len(ok) else float("nan"),
                "p95_s": round(p95, 2),
                "target_s": target,
                "met": "yes" if len(ok) == len(s) and p95 < target else "no",
            }
        )
    return rows
