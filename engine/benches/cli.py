"""``python -m engine bench <target>``: speed measured side by side against a named baseline, in one run.

Each target lives in ``engine/benches/<target>.py`` and defines ``add_args(parser)`` and ``run(args) -> int``.
Benchmarks print a small table and, with ``--out FILE.json``, write their numbers for the README tables.
"""

from __future__ import annotations

import argparse
import importlib

BENCHES: dict[str, str] = {
    "augment": "batched augmentation pipeline vs torchvision v2 per-image Compose",
    "train": "training step time per method vs SimCLR, and SimCLR vs a plain reference loop",
    "embed": "embedding img/s (inference path vs plain eval loop) and store build time split",
    "knn": "FAISS kNN query latency vs NumPy brute force on the same vectors",
    "browser": "dashboard interactions measured in Chromium: widget change to page settled, first page",
    "gpu": "one-command GPU check: every method's step, epoch time, augmentation and embedding throughput",
}


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark (" + ", ".join(BENCHES) + ")")
    targets = p.add_subparsers(dest="target", metavar="<target>", required=True)
    for name, help_text in BENCHES.items():
        module = importlib.import_module(f"engine.benches.{name}")
        tp = targets.add_parser(name, help=help_text, description=module.__doc__)
        tp.add_argument("--out", default=None, help="also write the results as JSON to this file")
        module.add_args(tp)
        tp.set_defaults(func=module.run)
