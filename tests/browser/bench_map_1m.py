"""Map interactions at 1M items in Chromium (issue 16): page settled after a colour change, a box selection, a zoom.

Not a test (no timing asserts): a measurement script. ``make`` writes a map-scale store of N real ``shapes`` items
(metadata and thumbnails rendered on access, streamed) whose 16-d vectors are synthetic (class centres + hue and
scale directions + noise), because embedding a million images takes hours on two shared cores; the map, its
density image and its selections only read coordinates, labels, metadata and thumbnails. ``measure`` serves the
store with ``streamlit run`` and times each interaction round by round, printing medians.

    .venv/bin/python tests/browser/bench_map_1m.py make /tmp/map1m --n 1000000
    .venv/bin/python tests/browser/bench_map_1m.py measure /tmp/map1m --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "browser"))

from conftest import ARGS, CHROMIUM, start_server, wait_app_idle  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from engine.benches.browser import roots_env  # noqa: E402
from engine.core.io import atomic_dir, open_memmap  # noqa: E402
from engine.data import load_dataset  # noqa: E402
from engine.store.build import peak_rss_bytes, store_path  # noqa: E402
from engine.store.format import StoreOptions, finish_store, write_meta  # noqa: E402
from engine.train.checkpoint import read_info  # noqa: E402

MODEL = "shapes-simclr"
CHUNK = 16_384
TIMEOUT_MS = 180_000


def vectors(labels: np.ndarray, hue: np.ndarray, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Synthetic 16-d vectors: a class centre (fixed seed), hue on a circle, scale on an axis, Gaussian noise."""
    centres = np.random.default_rng(0).normal(size=(10, 16)) * 3.0
    x = centres[labels] + rng.normal(scale=0.7, size=(len(labels), 16))
    x[:, 0] += np.cos(2 * np.pi * hue)
    x[:, 1] += np.sin(2 * np.pi * hue)
    x[:, 2] += 2.0 * scale
    return x.astype(np.float32)


def make(root: Path, n: int) -> None:
    env = roots_env(root)
    for ext in ("safetensors", "json"):
        shutil.copy(
            REPO / "checkpoints" / f"{MODEL}.{ext}", Path(env["EQUILAB_CHECKPOINTS"]) / f"{MODEL}.{ext}"
        )
    ckpt = Path(env["EQUILAB_CHECKPOINTS"]) / f"{MODEL}.safetensors"
    t0 = time.perf_counter()
    data = load_dataset("shapes", "test", size=n)
    out = store_path(ckpt, "shapes", "test", env["EQUILAB_STORES"], {"size": n})
    rng = np.random.default_rng(1)
    with atomic_dir(out, overwrite=True) as tmp:
        x = open_memmap(tmp / "backbone.npy", np.float32, (n, 16))
        th = open_memmap(tmp / "thumbs.npy", np.uint8, (n, 32, 32, 3))
        for a in range(0, n, CHUNK):
            s = slice(a, min(a + CHUNK, n))
            th[s] = data.images[s]
            x[s] = vectors(data.labels[s], data.meta["hue"][s], data.meta["scale"][s], rng)
        x.flush(), th.flush()
        del x, th
        write_meta(tmp, data.labels, data.meta)
        source = {
            "checkpoint": str(ckpt.resolve()),
            "checkpoint_sha256": read_info(ckpt)["weights"]["sha256"],
            "method": "simclr",
            "dataset": "shapes",
            "split": "test",
            "data_root": None,
            "store_root": env["EQUILAB_STORES"],
            "limit": None,
            "data": {"name": "shapes", "split": "test", "root": None, "options": {"size": n}},
            "synthetic_vectors": "tests/browser/bench_map_1m.py",
        }
        info = {"spaces": ["backbone"], "n": n, "classes": data.classes, "labels": data.labels}
        finish_store(tmp, source, info, StoreOptions(umap=False))
    print(
        f"{out}: {n:,} items in {time.perf_counter() - t0:.0f} s, peak RSS {peak_rss_bytes() / 2**30:.2f} GiB"
    )


# ---------------------------------------------------------------- measuring

SELECTION = "Array.from(document.querySelectorAll('h3')).map(e => e.innerText).find(t => t.startsWith('Selection')) || ''"
CAPTIONS = "Array.from(document.querySelectorAll('[data-testid=stCaptionContainer]')).map(e => e.innerText).join('|')"


def settled(page, predicate: str = "true") -> None:
    wait_app_idle(page, TIMEOUT_MS)
    page.wait_for_function(f"() => {predicate}", timeout=TIMEOUT_MS, polling=50)
    wait_app_idle(page, TIMEOUT_MS)


def timed(page, act, predicate: str = "true") -> float:
    t0 = time.perf_counter()
    act()
    page.wait_for_timeout(0)
    settled(page, predicate)
    return time.perf_counter() - t0


def pick_colour(page, name: str) -> None:
    box = page.get_by_test_id("stSelectbox").filter(has_text="Colour by").locator("input")
    box.click()
    box.fill(name)
    box.press("Enter")


def drag_box(page, f0: float = 0.3, f1: float = 0.6) -> None:
    chart = page.get_by_test_id("stPlotlyChart").first
    b = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(b["x"] + b["width"] * f0, b["y"] + b["height"] * f0)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] * (f0 + f1) / 2, b["y"] + b["height"] * (f0 + f1) / 2, steps=5)
    page.mouse.move(b["x"] + b["width"] * f1, b["y"] + b["height"] * f1, steps=5)
    page.mouse.up()


def measure(root: Path, rounds: int) -> dict:

    env = roots_env(root)
    proc, url = start_server(env)
    res: dict[str, list[float]] = {k: [] for k in ("colour", "selection", "zoom", "reset zoom")}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            t0 = time.perf_counter()
            page.goto(f"{url}/map?model={MODEL}")
            settled(page, "document.querySelectorAll('[data-testid=stPlotlyChart] image').length > 0")
            first = time.perf_counter() - t0
            caps0 = page.evaluate(f"() => {CAPTIONS}")
            print("captions:", caps0[:300], flush=True)
            for r in range(rounds):
                for name in ("hue", "label"):
                    res["colour"].append(timed(page, lambda n=name: pick_colour(page, n)))
                res["selection"].append(
                    timed(page, lambda: drag_box(page), f"({SELECTION}).startsWith('Selection: ')")
                )
                sel = page.evaluate(f"() => {SELECTION}")
                zoom = page.get_by_role("button", name="Zoom to selection")
                res["zoom"].append(timed(page, zoom.click))
                caps = page.evaluate(f"() => {CAPTIONS}")
                res["reset zoom"].append(timed(page, page.get_by_role("button", name="Reset zoom").click))
                print(
                    f"round {r}: {sel!r}; zoomed: {[c for c in caps.split('|') if c.startswith('Showing')][:1]!r}",
                    flush=True,
                )
            page.screenshot(path=str(root / "map-1m.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    out = {"first open of the map (s)": first}
    out.update({f"{k} -> settled, median s": statistics.median(v) for k, v in res.items()})
    out["all (s)"] = res
    print(json.dumps(out, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["make", "measure"])
    ap.add_argument("root", type=Path)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    make(a.root, a.n) if a.what == "make" else measure(a.root, a.rounds)


if __name__ == "__main__":
    main()
