"""Dashboard benchmark: server-side rerun time per page after a widget change, and time to first render.

    .venv/bin/python tests/app/bench_app.py                # default checkpoints/ + stores/, shapes
    .venv/bin/python tests/app/bench_app.py --fresh        # also: first render with empty stores/ and cache

AppTest runs the scripts in this process exactly as the server would (no browser), so ``AppTest.run()`` after a
widget change is the server-side rerun time. Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
MAIN = str(REPO / "app" / "main.py")

# page -> (widget kind, key, two values to alternate between)
CHANGES: dict[str, tuple[str, str, tuple]] = {
    "lab": ("slider", "lab_hue", (0.1, -0.1)),
    "map": ("radio", "map_kind", ("pca2", "umap")),
    "retrieval": ("slider", "ret_k", (12, 8)),
    "compare": ("slider", "cmp_k", (10, 12)),
    "training": ("toggle", "train_live", (False, False)),
    "about": (None, "", ()),
}


def first_render() -> float:
    """Seconds from a cold AppTest start to the default page rendered (stores built if missing)."""

    t0 = time.perf_counter()
    at = AppTest.from_file(MAIN, default_timeout=1800).run()
    dt = time.perf_counter() - t0
    if at.exception:
        raise SystemExit(f"first render failed: {at.exception[0].message}")
    return dt


def rerun_times(page: str, repeats: int) -> list[float]:

    at = AppTest.from_file(MAIN, default_timeout=600).run()
    at.switch_page(f"views/{page}.py").run()
    at.run()  # warm: caches filled, imports done
    kind, key, values = CHANGES[page]
    out = []
    for i in range(repeats):
        widgets = [w for w in getattr(at, kind)] if kind else []
        widget = next((w for w in widgets if w.key == key), None)
        if widget is not None:  # absent when the page stopped early (e.g. no runs): time a plain rerun
            widget.set_value(values[i % 2])
        t0 = time.perf_counter()
        at.run()
        out.append(time.perf_counter() - t0)
        if at.exception:
            raise SystemExit(f"{page}: {at.exception[0].message}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", default=",".join(CHANGES), help="comma-separated pages to time")
    p.add_argument("--repeats", type=int, default=5, help="timed reruns per page (after one warm-up)")
    p.add_argument("--fresh", action="store_true", help="time the first render with empty stores/ and cache")
    p.add_argument("--out", default=None, help="also write the numbers as JSON to this file")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    results: dict[str, float] = {}
    if args.fresh:
        tmp = tempfile.mkdtemp(prefix="equilab-bench-")
        os.environ["EQUILAB_STORES"] = os.path.join(tmp, "stores")
        os.environ["EQUILAB_CACHE"] = os.path.join(tmp, "cache")
        results["first_render_s"] = first_render()
        print(f"first render (fresh stores + cache): {results['first_render_s']:.1f} s")
    for page in args.pages.split(","):
        ts = rerun_times(page, args.repeats)
        results[f"{page}_rerun_median_s"] = statistics.median(ts)
        print(
            f"{page:10s} rerun after widget change: median {statistics.median(ts):.3f} s, max {max(ts):.3f} s"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
