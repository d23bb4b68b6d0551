"""Store round-trip and every verification failure path."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from engine.core.errors import StoreError
from engine.data import load_dataset
from engine.methods import build_method
from engine.store.build import (
    EmbedJob,
    build_store,
    ensure_store,
    limit_note,
    merge_shards,
    shard_range,
    store_path,
)
from engine.store.format import MANIFEST_VERSION, StoreArrays, StoreOptions, open_store, write_store
from engine.train.checkpoint import save_checkpoint

SHA = "ab" * 32


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 60
    arrays = StoreArrays(
        embeddings={"backbone": rng.normal(size=(n, 16)), "projector": rng.normal(size=(n, 8))},
        labels=np.arange(n) % 3,
        classes=("a", "b", "c"),
        images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        meta={"hue": rng.uniform(size=n)},
    )
    source = {"checkpoint": "ck.safetensors", "checkpoint_sha256": SHA, "dataset": "toy", "split": "test"}
    path = tmp_path_factory.mktemp("stores") / "toy"
    write_store(path, arrays, source, StoreOptions(umap=False))
    return path, arrays


def _copy(built, tmp_path):

    dst = tmp_path / "copy"
    shutil.copytree(built[0], dst)
    return dst


def test_round_trip(built):
    path, arrays = built
    s = open_store(path, expect_checkpoint_sha=SHA)
    assert s.spaces == ("backbone", "projector")
    assert s.classes == ("a", "b", "c")
    np.testing.assert_array_equal(s.labels, arrays.labels)
    np.testing.assert_allclose(s.embeddings("backbone"), arrays.embeddings["backbone"].astype(np.float32))
    assert s.embeddings("projector").dtype == np.float32 and isinstance(s.embeddings("projector"), np.memmap)
    np.testing.assert_array_equal(s.thumbnails, arrays.images)
    np.testing.assert_allclose(s.meta["hue"].to_numpy(), arrays.meta["hue"])
    with pytest.raises(StoreError, match="without umap"):
        s.coords("backbone", "umap")  # UMAP itself is tested in test_projection (numba JIT is slow)
    assert s.coords("projector", "pca3").shape == (60, 3)
    b = s.pca_basis("backbone")
    np.testing.assert_allclose(b.project(s.embeddings("backbone")), s.coords("backbone", "pca3"), atol=1e-4)
    assert s.index("backbone").ntotal == 60
    m = s.manifest
    assert m["spaces"]["backbone"] == {"dim": 16, "dtype": "float32"}
    assert m["umap"]["seed"] == 0 and "faiss-cpu" in m["versions"]
    assert set(m["files"]) >= {"backbone.npy", "meta.parquet", "thumbs.npy", "backbone.faiss"}


def test_float16_option(tmp_path, built):
    _, arrays = built
    path = write_store(
        tmp_path / "h", arrays, {"checkpoint_sha256": SHA}, StoreOptions(dtype="float16", umap=False)
    )
    assert open_store(path).embeddings("backbone").dtype == np.float16


def test_truncated_npy(built, tmp_path):
    p = _copy(built, tmp_path)
    data = (p / "backbone.npy").read_bytes()
    (p / "backbone.npy").write_bytes(data[:-100])
    with pytest.raises(StoreError, match=r"truncated.*python -m engine embed"):
        open_store(p, verify=False)


def test_modified_byte(built, tmp_path):
    p = _copy(built, tmp_path)
    data = bytearray((p / "projector.npy").read_bytes())
    data[-1] ^= 0xFF
    (p / "projector.npy").write_bytes(bytes(data))
    open_store(p, verify=False)  # same size: only the full hash notices
    with pytest.raises(StoreError, match=r"modified.*python -m engine embed"):
        open_store(p)


def test_missing_index(built, tmp_path):
    p = _copy(built, tmp_path)
    (p / "backbone.faiss").unlink()
    with pytest.raises(StoreError, match=r"missing.*python -m engine embed"):
        open_store(p)


def test_newer_manifest_version(built, tmp_path):
    p = _copy(built, tmp_path)
    m = json.loads((p / "manifest.json").read_text())
    m["version"] = MANIFEST_VERSION + 1
    (p / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match=r"version.*python -m engine embed"):
        open_store(p)


def test_wrong_checkpoint(built):
    with pytest.raises(StoreError, match=r"not cdcdcdcd.*python -m engine embed"):
        open_store(built[0], expect_checkpoint_sha="cd" * 32)


def test_missing_store_and_space(built, tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nope")
    with pytest.raises(StoreError, match="no space 'nope'"):
        open_store(built[0]).embeddings("nope")


def test_existing_store_needs_overwrite(built):
    with pytest.raises(StoreError, match="overwrite"):
        write_store(built[0], built[1], {})


def test_shard_merge_equals_single_pass(tmp_path):

    assert [shard_range(10, r, 3) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    dirs = []
    for r in range(3):
        d = tmp_path / f"rank{r}"
        d.mkdir()
        a, b = shard_range(10, r, 3)
        np.save(d / "backbone.npy", x[a:b])
        dirs.append(d)
    merge_shards(dirs, tmp_path, ["backbone"], "float32")
    np.testing.assert_array_equal(np.load(tmp_path / "backbone.npy"), x)


def test_build_and_ensure_store_from_checkpoint(tmp_path):

    torch.manual_seed(0)
    model = build_method("clever", width=0.0625, image_size=32).eval()
    ckpt = save_checkpoint(tmp_path / "ck" / "tiny", model, config={}, epoch=0, step=0).with_suffix(
        ".safetensors"
    )
    calls = []
    path = build_store(
        EmbedJob(ckpt, "shapes", "test", store_root=tmp_path / "stores", batch=32, device="cpu", limit=80),
        StoreOptions(umap=False),
        progress=lambda f, m: calls.append(f),
    )
    assert path == store_path(ckpt, "shapes", "test", tmp_path / "stores")
    s = open_store(path)
    assert set(s.spaces) == {"backbone", "projector", "invariant_part", "equivariant_part"} and s.n == 80

    data = load_dataset("shapes", "test")
    with torch.no_grad():
        want = model.embed(torch.from_numpy(data.images[:5]).permute(0, 3, 1, 2).float() / 255)["backbone"]
    np.testing.assert_allclose(s.embeddings("backbone")[:5], want.numpy(), atol=1e-5)
    assert {"label", "hue", "angle"} <= set(s.meta.columns) and s.thumbnails.shape == (80, 32, 32, 3)
    assert calls[-1] == 1.0 and calls == sorted(calls)
    # ensure_store rebuilds a --limit subset as the full split? Too slow here; check it reuses a full one instead.
    full = s.manifest
    full["source"]["limit"] = None
    (path / "manifest.json").write_text(__import__("json").dumps(full))
    assert ensure_store(ckpt, "shapes", "test", store_root=tmp_path / "stores") == path


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda p: (p / "manifest.json").unlink(), r"no manifest\.json \(incomplete build\?\)"),
        (lambda p: (p / "manifest.json").write_bytes(b"\x80\xff{"), r"manifest\.json is not valid JSON"),
        (lambda p: (p / "manifest.json").write_text("[1, 2]"), r"not an EquiLab store manifest"),
        (lambda p: _edit_manifest(p, version="2"), r"manifest version '2'"),
        (lambda p: _edit_manifest(p, version=None), r"manifest version None"),
        (lambda p: _edit_manifest(p, version=MANIFEST_VERSION + 7), r"reads up to 1\. Update the engine"),
        (lambda p: (p / "thumbs.npy").unlink(), r"thumbs\.npy is missing"),
        (lambda p: (p / "meta.parquet").write_bytes(b""), r"meta\.parquet has 0 bytes"),
        (lambda p: _flip_last_byte(p / "backbone.npy"), r"backbone\.npy was modified"),
        (lambda p: _flip_last_byte(p / "projector.faiss"), r"projector\.faiss was modified"),
    ],
)
def test_damaged_stores_name_the_file_and_the_rebuild_command(built, tmp_path, damage, needle):
    p = _copy(built, tmp_path)
    damage(p)
    with pytest.raises(StoreError, match=needle) as e:
        open_store(p)
    assert "python -m engine embed" in str(e.value) and "--overwrite" in str(e.value)


def _edit_manifest(p, **changes):
    m = json.loads((p / "manifest.json").read_text())
    m.update(changes)
    (p / "manifest.json").write_text(json.dumps(m))


def _flip_last_byte(f):
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))


def test_limit_note_names_the_classes_a_prefix_misses():
    sorted_split = np.repeat(np.arange(3), 4)  # stored class by class
    assert "hold 1 of the split's 3 classes" in limit_note(sorted_split, 4)
    assert "hold 2 of the split's 3 classes" in limit_note(sorted_split, 5)
    assert limit_note(sorted_split, 12) is None and limit_note(sorted_split, 50) is None  # no prefix cut
    assert limit_note(np.tile(np.arange(3), 4), 3) is None  # shuffled: the prefix has every class
    assert limit_note(np.full(12, -1), 4) is None  # unlabelled
