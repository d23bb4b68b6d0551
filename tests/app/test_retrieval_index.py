"""AppTest: the Retrieval page says how it searched (exact, or approximate with the recall measured at build) and
searches exactly on demand (issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.store.format import StoreArrays, StoreOptions, open_store, write_store


@pytest.fixture(scope="module")
def hnsw_roots(tmp_path_factory: pytest.TempPathFactory, fixture_store) -> dict[str, str]:
    """The fixture roots with every store re-indexed by a tuned HNSW (the size rule would pick exact at N=160)."""
    env = fixture_store.build(tmp_path_factory.mktemp("hnsw-roots"))
    for path in Path(env["EQUILAB_STORES"]).iterdir():
        s = open_store(path)
        meta = s.meta
        arrays = StoreArrays(
            embeddings={sp: np.asarray(s.embeddings(sp)) for sp in s.spaces},
            labels=s.labels,
            classes=s.classes,
            images=np.asarray(s.thumbnails),
            meta={c: meta[c].to_numpy() for c in meta.columns if c != "label"},
        )
        options = StoreOptions(umap=False, index_kind="hnsw")
        write_store(path, arrays, s.manifest["source"], options, overwrite=True)
    return env


def _brute_top(store_path: Path, space: str, i: int, k: int) -> list[int]:
    emb = np.asarray(open_store(store_path).embeddings(space), dtype=np.float64)
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    order = np.argsort(-(x @ x[i]), kind="stable")
    return order[order != i][:k].tolist()  # the query item itself is left out, as the page does


def test_exact_store_says_exact_and_the_toggle_is_off(open_app):
    at = open_app("retrieval", q="3")
    assert any(c.value == "Search: exact (flat)" for c in at.caption)
    assert at.toggle(key="ret_exact").disabled


def test_approximate_store_shows_its_recall_and_searches_exactly_on_demand(
    hnsw_roots, monkeypatch, page_runner
):
    for key, value in hnsw_roots.items():
        monkeypatch.setenv(key, value)
    at = page_runner("retrieval", q="5")
    model = at.sidebar.selectbox(key="sb_model").value
    path = Path(hnsw_roots["EQUILAB_STORES"]) / f"{model}-shapes-test"
    space = at.sidebar.selectbox(key="sb_space").value
    info = open_store(path).index_info(space)
    line = next(c.value for c in at.caption if c.value.startswith("Search: "))
    assert line.startswith("Search: approximate (HNSW ef=") and "measured at build" in line
    assert f"recall@10 {info['recall']:.4g}" in line
    toggle = at.toggle(key="ret_exact")
    assert not toggle.disabled and not toggle.value
    toggle.set_value(True).run()
    assert not at.exception
    assert any(c.value == "Search: exact (on demand)" for c in at.caption)
    labels = open_store(path).labels
    want = int((labels[_brute_top(path, space, 5, 8)] == labels[5]).sum())
    assert at.caption[-1].value.startswith(f"{want} of 8 share the query's label")
