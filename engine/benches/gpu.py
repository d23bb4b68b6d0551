"""Placeholder: filled in by the gpu benchmark work (issue 16)."""

from __future__ import annotations

import argparse


def add_args(p: argparse.ArgumentParser) -> None:
    del p


def run(args: argparse.Namespace) -> int:
    del args
    print("not implemented yet")
    return 2
