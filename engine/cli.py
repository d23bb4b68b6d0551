"""``python -m engine <command> …``: one argparse CLI whose subcommands live beside the code they drive.

Each module listed in :data:`COMMAND_MODULES` defines ``add_commands(subparsers)``, registering its parsers with
``set_defaults(func=handler)``; a handler takes the parsed ``argparse.Namespace`` and returns an exit code.
Errors derived from :class:`engine.core.errors.EquiLabError` are printed as one line, without a traceback; so is an
``ImportError`` (a requirement missing or broken in this environment: the fix is the install, not the input), whose
traceback ``-v`` shows.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from engine.core.errors import EquiLabError

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "engine.data.cli",  # data info|preview
    "engine.augment.cli",  # augment preview
    "engine.train.loop",  # train
    "engine.store.build",  # embed
    "engine.eval.evaluate",  # eval
    "engine.imports.convert",  # import
    "engine.study.run",  # study run|report|collect
    "engine.benches.cli",  # bench augment|train|embed|knn|browser|gpu
    "engine.store.precompile",  # precompile
    "engine.lab.precompute",  # precompute (lab predictors + missing UMAP of built stores)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="EquiLab engine: pretrain, embed and evaluate SimCLR, E-SSL, EquiMod and CLeVER models.",
        epilog="Run `python -m engine <command> --help` for the options of each command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # Config overrides may also be written as flags: `--optim.lr=0.1` is the same as `optim.lr=0.1`.
    if unknown and hasattr(args, "overrides") and all(u.startswith("--") and "=" in u for u in unknown):
        args.overrides = [*args.overrides, *(u[2:] for u in unknown)]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    try:
        return int(args.func(args) or 0)
    except EquiLabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        if args.verbose:
            raise
        print(
            f"error: {e}. A requirement is missing or broken in this Python: run `make install` "
            "(or `pip install -r requirements.txt`); -v shows the traceback",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
