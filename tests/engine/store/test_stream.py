"""Streamed store builds (issue 16): large ``shapes`` splits render on access, the builder reads images chunk by
chunk, and the result equals the store of the same items held in memory; every build reports its costs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from engine.core.io import REPO_ROOT
from engine.data import ImageDataset, load_dataset
from engine.data.shapes import (
    CLASSES,
    FACTOR_RANGES,
    STREAM_MIN,
    RenderedImages,
    generate,
    generate_lazy,
    render_batch,
)
from engine.store.build import REPORT, EmbedJob, build_store, embed_batches, embed_to_memmaps
from engine.store.format import StoreOptions, open_store
from engine.train.checkpoint import load_model

CKPT = REPO_ROOT / "checkpoints" / "shapes-simclr.json"
N, SEED = 300, 5
OPTIONS = StoreOptions(umap=True, umap_sample_cap=200, umap_neighbors=10)  # fit on 200, transform 100


def test_rendered_images_index_like_the_generated_array():
    full, lazy = generate(N, SEED, "test"), generate_lazy(N, SEED, "test")
    imgs = lazy.images
    assert isinstance(imgs, RenderedImages)
    assert imgs.shape == full.images.shape and imgs.dtype == np.uint8 and imgs.ndim == 4 and len(imgs) == N
    np.testing.assert_array_equal(imgs[:], full.images)
    np.testing.assert_array_equal(np.asarray(imgs), full.images)
    np.testing.assert_array_equal(imgs[17], full.images[17])
    np.testing.assert_array_equal(imgs[np.int64(-1)], full.images[-1])
    np.testing.assert_array_equal(imgs[100:233:7], full.images[100:233:7])
    ids = np.array([250, 3, 3, 99])
    np.testing.assert_array_equal(imgs[ids], full.images[ids])
    mask = full.labels == 4
    np.testing.assert_array_equal(imgs[mask], full.images[mask])
    np.testing.assert_array_equal(imgs[5:9, 2:4], full.images[5:9, 2:4])
    np.testing.assert_array_equal(lazy.labels, full.labels)
    assert lazy.meta.keys() == full.meta.keys()
    for k in full.meta:
        np.testing.assert_array_equal(lazy.meta[k], full.meta[k])
    with pytest.raises(IndexError):
        imgs[N]


def test_a_large_shapes_split_renders_each_item_from_its_own_factors():
    data = load_dataset("shapes", "test", size=STREAM_MIN)  # factor columns only: no 600 MB of pixels
    assert isinstance(data.images, RenderedImages) and len(data) == STREAM_MIN
    ids = np.array([0, 123_456, STREAM_MIN - 1])
    want = render_batch(data.labels[ids], {k: data.meta[k][ids] for k in FACTOR_RANGES})
    np.testing.assert_array_equal(data.images[ids], want)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The same 300 items embedded twice: rendered on access (streamed) and from the memory-mapped cache."""
    root = tmp_path_factory.mktemp("stream")
    job = EmbedJob(CKPT, "shapes", "test", store_root=root / "lazy", batch=64, device="cpu")
    job = replace(job, data_options={"size": N, "seed": SEED})
    lazy = generate_lazy(N, SEED, "test")
    data = ImageDataset("shapes", "test", lazy.images, lazy.labels, CLASSES, lazy.meta)
    streamed = open_store(build_store(job, OPTIONS, data=data))
    cached = open_store(build_store(replace(job, store_root=root / "cached"), OPTIONS))
    return streamed, cached, generate(N, SEED, "test")


def test_streamed_store_equals_the_in_memory_embedding(built):
    streamed, _, full = built
    model, _ = load_model(CKPT, "cpu")
    want: dict[str, list[np.ndarray]] = {}
    embed_batches(
        model, full.images, lambda at, outs: [want.setdefault(k, []).append(v) for k, v in outs.items()]
    )
    assert set(streamed.spaces) == set(want)
    for space, parts in want.items():
        np.testing.assert_allclose(streamed.embeddings(space), np.concatenate(parts), atol=1e-5)
    np.testing.assert_array_equal(streamed.thumbnails, full.images)  # 32 px images are their own thumbnails
    np.testing.assert_array_equal(streamed.labels, full.labels)
    np.testing.assert_array_equal(streamed.meta["hue"].to_numpy(), full.meta["hue"])


def test_streamed_and_cached_builds_write_the_same_store(built):
    streamed, cached, _ = built
    assert streamed.manifest["source"] == {
        **cached.manifest["source"],
        "store_root": streamed.manifest["source"]["store_root"],
    }
    for space in streamed.spaces:
        np.testing.assert_array_equal(streamed.embeddings(space), cached.embeddings(space))
        for kind in ("pca2", "pca3", "umap"):
            np.testing.assert_array_equal(streamed.coords(space, kind), cached.coords(space, kind))
    np.testing.assert_array_equal(streamed.thumbnails, cached.thumbnails)


def test_chunk_size_changes_nothing_but_memory(built, tmp_path):
    streamed, _, _ = built
    model, _ = load_model(CKPT, "cpu")
    images = generate_lazy(N, SEED, "test").images
    times: dict[str, float] = {}
    spaces = embed_to_memmaps(
        model, images, tmp_path, "float32", 64, "cpu", rows=(10, 250), thumb_size=64, timings=times, chunk=37
    )
    assert set(spaces) == set(streamed.spaces) and set(times) == {"read", "embed", "thumbs"}
    for space in spaces:
        got = np.load(tmp_path / f"{space}.npy")
        np.testing.assert_allclose(got, streamed.embeddings(space)[10:250], atol=1e-5)
    np.testing.assert_array_equal(np.load(tmp_path / "thumbs.npy"), streamed.thumbnails[10:250])


def test_build_report_records_stages_wall_time_ram_and_disk(built):
    streamed, _, _ = built
    rep = json.loads((streamed.path / REPORT).read_text())
    assert rep["n"] == N and rep["spaces"] == list(streamed.spaces)
    assert {"read", "embed", "thumbs", "pca", "umap", "index"} <= set(rep["seconds"])
    stages = {
        k: v for k, v in rep["seconds"].items() if not k.startswith("umap_")
    }  # umap_fit/transform: parts of umap
    assert rep["wall_s"] >= sum(stages.values()) > 0
    assert rep["disk_bytes"] == sum(f["size"] for f in streamed.manifest["files"].values())
    assert 0 < rep["peak_rss_bytes"] < 64 * 2**30
    assert REPORT not in streamed.manifest["files"]  # a report, not store content: open_store ignores it
