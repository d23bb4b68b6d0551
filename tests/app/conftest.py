"""AppTest fixtures: tiny checkpoints + stores (tests/app/fixture_store.py) and the app pointed at them."""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

HERE = Path(__file__).resolve().parent
MAIN = str(HERE.parents[1] / "app" / "main.py")


def _fixture_module():
    spec = importlib.util.spec_from_file_location("equilab_fixture_store", HERE / "fixture_store.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _plotly_array(v) -> np.ndarray:
    """A Plotly JSON array as numbers: a list, or plotly 6's typed array {"dtype", "bdata" (base64)}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    arr = np.asarray(v)
    return np.asarray(v, dtype=np.float64) if arr.dtype == object else arr  # JSON null (a gap) -> NaN


@pytest.fixture(scope="session")
def plotly_array():
    """The decoder of a chart's data arrays (:func:`_plotly_array`), for tests that read a figure's JSON."""
    return _plotly_array


@pytest.fixture(scope="session")
def fixture_store():
    """tests/app/fixture_store.py as a module (its builders and writers)."""
    return _fixture_module()


@pytest.fixture(scope="session")
def store_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Env vars pointing at fixture roots with two untrained checkpoints and their shapes stores."""
    return _fixture_module().build(tmp_path_factory.mktemp("app-roots"))


@pytest.fixture
def app_env(store_roots: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in store_roots.items():
        monkeypatch.setenv(k, v)
    return store_roots


def run_page(page: str, **query: str):
    """An AppTest of the whole app (router + sidebar) with ``query`` in the URL, switched to ``page`` and run."""

    at = AppTest.from_file(MAIN, default_timeout=180)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    if page != "lab":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.fixture
def page_runner():
    """:func:`run_page`, for tests whose own fixtures set the roots."""
    return run_page


@pytest.fixture
def open_app(app_env):
    """``open_app("map")``: :func:`run_page` on the fixture roots."""
    return run_page
