"""Browser end-to-end fixtures: a real `streamlit run` server on a free port and Debian's Chromium."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from engine.benches.browser import CHROMIUM, CHROMIUM_ARGS
from engine.benches.browser import start_server as bench_start_server
from engine.store.build import ensure_store
from engine.store.format import StoreOptions

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
ARGS = CHROMIUM_ARGS  # one definition of the server and browser settings: engine/benches/browser.py


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``streamlit run app/serve.py`` on a free port (the bench's), its log under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    return bench_start_server(env, ARTIFACTS / f"streamlit-{time.time_ns()}.log")


def _load_fixture_module():
    """tests/app/fixture_store.py (the tiny checkpoint + store builder shared with the AppTest suite)."""
    spec = importlib.util.spec_from_file_location(
        "equilab_fixture_store", REPO / "tests/app/fixture_store.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment pointing the app at fixture roots holding two tiny checkpoints and their stores."""
    return _load_fixture_module().build(tmp_path_factory.mktemp("app-roots"))


SHIPPED = REPO / "checkpoints"
WALK_ITEMS = 200  # shapes test items per walk store: every page works, each store builds in seconds


def shipped_shapes_models() -> list[str]:
    """Labels of the shipped checkpoints trained on shapes (checkpoints/shapes-*.json)."""
    return sorted(p.stem for p in SHIPPED.glob("shapes-*.json") if p.with_suffix(".safetensors").is_file())


@pytest.fixture(scope="session")
def shipped_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Roots holding copies of the shipped shapes checkpoints and a small store of each (built once per session,
    through the engine's own store builder; no UMAP, except when the walk saves the README's screenshots), and an
    empty data root, so CIFAR-10 is absent."""

    root = tmp_path_factory.mktemp("walk-roots")
    dirs = {k: root / k for k in ("checkpoints", "runs", "stores", "no-data")}
    for d in dirs.values():
        d.mkdir()
    for label in shipped_shapes_models():
        for ext in ("safetensors", "json"):  # copies: links out of the root are refused by the app
            shutil.copy(SHIPPED / f"{label}.{ext}", dirs["checkpoints"] / f"{label}.{ext}")
        ensure_store(
            dirs["checkpoints"] / f"{label}.safetensors",
            "shapes",
            "test",
            store_root=dirs["stores"],
            options=StoreOptions(umap=bool(os.environ.get("EQUILAB_SCREENSHOTS"))),
            data_options={"size": WALK_ITEMS},
        )
    return {
        "EQUILAB_CHECKPOINTS": str(dirs["checkpoints"]),
        "EQUILAB_RUNS": str(dirs["runs"]),
        "EQUILAB_STORES": str(dirs["stores"]),
        "EQUILAB_DATA_ROOT": str(dirs["no-data"]),
    }


@pytest.fixture(scope="module")
def shipped_server(shipped_env: dict[str, str]) -> Iterator[str]:
    """Base URL of the app serving the shipped shapes models (:func:`shipped_env`)."""
    proc, url = start_server(shipped_env)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(app_env: dict[str, str]) -> Iterator[str]:
    """Base URL of a `streamlit run app/serve.py` subprocess on a free port."""
    proc, url = start_server(app_env)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def idle():
    return wait_app_idle


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser() -> Iterator:

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def wait_app_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until the app is connected and no script run is in progress (Streamlit's own e2e signal)."""
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=timeout_ms
    )
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
