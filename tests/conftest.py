"""Shared test settings: small, deterministic, CPU-only, and an isolated cache directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
CIFAR10_JPEG = (REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg").resolve()


@pytest.fixture(scope="session", autouse=True)
def _small_and_deterministic(tmp_path_factory: pytest.TempPathFactory) -> None:

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Keep generated datasets out of the user's cache; CI starts from nothing anyway.
    os.environ.setdefault("EQUILAB_CACHE", str(tmp_path_factory.mktemp("equilab-cache")))
