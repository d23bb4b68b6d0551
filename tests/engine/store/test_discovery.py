"""engine.store.discovery on real files: checkpoints and stores found under roots, links out ignored, the embed
command accepted by the engine's own CLI, and store errors carrying their fix."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import build_parser
from engine.core.errors import StoreError
from engine.core.io import sha256_file
from engine.data import load_dataset
from engine.methods import build_method
from engine.store.build import store_path
from engine.store.discovery import (
    canonical_store,
    embed_command,
    find_checkpoints,
    find_store,
    recorded_sha,
)
from engine.store.format import StoreArrays, StoreOptions, open_store, write_store
from engine.train.checkpoint import save_checkpoint

N = 24


def _checkpoint(stem: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_method("none", width=0.125, image_size=32).eval()
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(stem, model, config={"test": True}, epoch=0, step=0)
    return stem.with_suffix(".safetensors")


def _store(path: Path, ckpt: Path, options: dict | None = None) -> Path:
    ds = load_dataset("shapes", "test", size=N)
    images = np.array(ds.images)
    source = {
        "checkpoint": str(ckpt),
        "checkpoint_sha256": sha256_file(ckpt),
        "dataset": "shapes",
        "split": "test",
        **({"dataset_options": options} if options else {}),
    }
    arrays = StoreArrays(
        embeddings={"backbone": np.random.default_rng(0).normal(size=(N, 8))},
        labels=np.asarray(ds.labels, dtype=np.int64),
        classes=tuple(ds.classes),
        images=images,
    )
    return write_store(path, arrays, source, StoreOptions(umap=False))


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("discovery")
    r = {k: base / k for k in ("checkpoints", "runs", "stores", "outside")}
    for d in r.values():
        d.mkdir()
    _checkpoint(r["checkpoints"] / "alpha")
    _checkpoint(r["runs"] / "exp1" / "last", seed=1)
    _checkpoint(r["outside"] / "evil", seed=2)
    for suffix in (".safetensors", ".json"):  # a link inside the root to a checkpoint outside it
        (r["checkpoints"] / f"evil{suffix}").symlink_to(r["outside"] / f"evil{suffix}")
    shutil.copy(r["checkpoints"] / "alpha.safetensors", r["checkpoints"] / "orphan.safetensors")  # no sidecar
    return r


def test_find_checkpoints_labels_roots_in_order_and_skips_links_out_and_orphans(roots):
    found = find_checkpoints({k: roots[k] for k in ("checkpoints", "runs", "stores")})
    assert found == {
        "alpha": roots["checkpoints"] / "alpha.safetensors",
        "runs/exp1/last": roots["runs"] / "exp1" / "last.safetensors",
    }
    assert find_checkpoints({"checkpoints": roots["checkpoints"] / "missing"}) == {}


def test_recorded_sha_is_the_weights_hash_and_none_when_unreadable(roots, tmp_path):
    ckpt = roots["checkpoints"] / "alpha.safetensors"
    assert recorded_sha(ckpt) == sha256_file(ckpt)
    bad = tmp_path / "bad.safetensors"
    bad.with_suffix(".json").write_text("{not json")
    assert recorded_sha(bad) is None
    assert recorded_sha(tmp_path / "absent.safetensors") is None
    assert canonical_store(bad, "shapes", "test", tmp_path) is None


def test_find_store_prefers_the_canonical_path_and_ignores_other_data_and_links_out(roots, tmp_path):
    ckpt = roots["checkpoints"] / "alpha.safetensors"
    stores = tmp_path / "stores"
    stores.mkdir()
    assert find_store(ckpt, "shapes", "test", stores) is None
    odd = _store(stores / "aaa-hand-made", ckpt)  # sorts first, but is not where the command writes
    assert find_store(ckpt, "shapes", "test", stores) == odd
    canon = _store(store_path(ckpt, "shapes", "test", stores), ckpt)
    assert canon == canonical_store(ckpt, "shapes", "test", stores)
    assert find_store(ckpt, "shapes", "test", stores) == canon
    assert find_store(ckpt, "shapes", "train", stores) is None
    assert find_store(roots["runs"] / "exp1" / "last.safetensors", "shapes", "test", stores) is None
    # a matching store reached through a link pointing outside the root is never returned
    other = tmp_path / "other-stores"
    other.mkdir()
    real = _store(roots["outside"] / "store-of-alpha", ckpt)
    (other / "linked").symlink_to(real, target_is_directory=True)
    assert find_store(ckpt, "shapes", "test", other) is None


def test_find_store_prefers_the_default_variant_over_another_size(roots, tmp_path):
    ckpt = roots["checkpoints"] / "alpha.safetensors"
    stores = tmp_path / "stores"
    big = _store(stores / "a-million", ckpt, {"size": 1_000_000})  # sorts first; another variant of shapes
    assert find_store(ckpt, "shapes", "test", stores) == big  # alone in its folder: still found
    default = _store(stores / "b-default", ckpt)
    assert find_store(ckpt, "shapes", "test", stores) == default


def test_embed_command_is_accepted_by_the_cli_and_rebuilds_the_canonical_store(roots, tmp_path):
    ckpt = roots["checkpoints"] / "alpha.safetensors"
    cmd = shlex.split(embed_command(ckpt, "shapes", "test", tmp_path / "my stores"))
    assert cmd[:4] == ["python", "-m", "engine", "embed"]
    args = build_parser().parse_args(cmd[3:])
    assert args.command == "embed" and args.overwrite and Path(args.checkpoint) == ckpt
    assert store_path(args.checkpoint, args.dataset, args.split, args.out) == canonical_store(
        ckpt, "shapes", "test", tmp_path / "my stores"
    )


def test_store_errors_carry_the_rebuild_command_as_fix(roots, tmp_path):
    ckpt = roots["checkpoints"] / "alpha.safetensors"
    store = _store(tmp_path / "s", ckpt)
    f = store / "backbone.npy"
    f.write_bytes(f.read_bytes()[:-8])
    with pytest.raises(StoreError) as e:
        open_store(store)
    err = e.value
    assert "truncated" in err.reason and "python -m engine" not in err.reason
    assert str(err) == f"{err.reason}; rebuild it with: {err.fix}"  # what the CLI prints
    args = build_parser().parse_args(shlex.split(err.fix)[3:])
    assert args.command == "embed" and Path(args.checkpoint) == ckpt and args.dataset == "shapes"
    with pytest.raises(StoreError) as e:
        open_store(tmp_path / "nowhere")
    assert e.value.fix.startswith("python -m engine embed") and "does not exist" in e.value.reason
