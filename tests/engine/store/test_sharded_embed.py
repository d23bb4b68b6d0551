"""Sharded embedding for real: ``torchrun --standalone --nproc_per_node 2 -m engine embed`` (two gloo ranks on the
CPU) writes one verified store equal to the one-process store of the same checkpoint and items.

Equal means: the same spaces with the same dims and dtype, the vectors of every space within 1e-5 (a rank forwards
other batch boundaries than one process, so float sums may round differently), the PCA coordinates within 1e-4,
and labels, metadata, thumbnails and every manifest field that does not describe the build itself (creation time,
timings, store root, file hashes of float-derived files, number of shards) identical. The store says it was
embedded by 2 processes, so the comparison cannot pass by both ranks embedding everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.core import distributed
from engine.methods import build_method
from engine.store.format import open_store
from engine.store.index import normalize
from engine.train.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[3]
N_ITEMS = 51  # odd: the two shards differ in size (26 + 25)
BATCH = 16  # several batches per shard, a partial last one
BUILD_FIELDS = {"created", "timings_s", "files"}  # describe one build, not the store's content
BUILD_SOURCE_FIELDS = {"store_root", "shards"}
EXACT_FILES = {"meta.parquet", "thumbs.npy"}  # derived from the items only: byte-identical


def _torchrun() -> list[str]:
    """The venv's torchrun (the same entry point as ``python -m torch.distributed.run``)."""
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_method("clever", width=0.0625, image_size=32).eval()  # four spaces
    stem = tmp_path_factory.mktemp("ck") / "tiny"
    return save_checkpoint(stem, model, config={}, epoch=0, step=0).with_suffix(".safetensors")


def _embed(launcher: list[str], checkpoint: Path, root: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``<launcher> -m engine embed`` of the first N_ITEMS shapes test images into ``root``, on the CPU."""
    cmd = [
        *launcher,
        "-m",
        "engine",
        "embed",
        "--checkpoint",
        str(checkpoint),
        "--dataset",
        "shapes",
        "--split",
        "test",
        "--limit",
        str(N_ITEMS),
        "--batch",
        str(BATCH),
        "--device",
        "cpu",
        "--no-umap",
        "--out",
        str(root),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _only_store(root: Path) -> Path:
    stores = [p.parent for p in root.glob("*/*/manifest.json")]
    assert len(stores) == 1, stores
    return stores[0]


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(checkpoint: Path, tmp_path: Path) -> None:
    # The one-process store first: it also fills the dataset cache the ranks then read (no generation race).
    single = _embed([sys.executable], checkpoint, tmp_path / "one", tmp_path)
    assert single.returncode == 0, single.stderr[-4000:]
    sharded = _embed(
        [*_torchrun(), "--standalone", "--nproc_per_node", "2"], checkpoint, tmp_path / "two", tmp_path
    )
    assert sharded.returncode == 0, sharded.stderr[-4000:]
    one = open_store(_only_store(tmp_path / "one"))
    two = open_store(_only_store(tmp_path / "two"))  # verifies every file's size and sha256
    assert two.path.relative_to(tmp_path / "two") == one.path.relative_to(tmp_path / "one")
    assert not list((tmp_path / "two").glob("*/.*shard*")), "shard directories left behind"

    m1, m2 = one.manifest, two.manifest
    assert m1["source"]["shards"] == 1 and m2["source"]["shards"] == 2, "the store was not embedded in shards"
    for key in set(m1) | set(m2):
        if key not in BUILD_FIELDS and key != "source":
            assert m2.get(key) == m1.get(key), key
    drop = BUILD_SOURCE_FIELDS
    assert {k: v for k, v in m2["source"].items() if k not in drop} == {
        k: v for k, v in m1["source"].items() if k not in drop
    }
    assert set(m2["files"]) == set(m1["files"])
    for name in EXACT_FILES:
        assert m2["files"][name] == m1["files"][name], name

    assert two.n == one.n == N_ITEMS
    assert (
        set(two.spaces) == set(one.spaces) == {"backbone", "projector", "invariant_part", "equivariant_part"}
    )
    np.testing.assert_array_equal(two.labels, one.labels)
    np.testing.assert_array_equal(two.thumbnails, one.thumbnails)
    assert two.meta.equals(one.meta)
    for space in one.spaces:
        a, b = one.embeddings(space), two.embeddings(space)
        assert a.shape == b.shape and a.dtype == b.dtype, space
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=space)
        np.testing.assert_allclose(two.coords(space, "pca2"), one.coords(space, "pca2"), atol=1e-4)
        # the index answers like the one-process index: same top-5 neighbours of the first 10 items
        q = normalize(np.array(a[:10], dtype=np.float32))
        np.testing.assert_array_equal(two.index(space).search(q, 5)[1], one.index(space).search(q, 5)[1])
    # rank 0 alone reports the store
    assert sharded.stdout.count("N=51") == 1, sharded.stdout


def test_single_process_helpers_are_identities(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torchrun nothing is joined: the device is returned unchanged, rank 0 of 1, barriers are no-ops."""
    for var in ("WORLD_SIZE", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(var, raising=False)
    cpu = torch.device("cpu")
    assert distributed.env_world_size() == 1
    assert distributed.init_from_env(cpu) == cpu
    assert (distributed.rank(), distributed.world_size(), distributed.is_distributed()) == (0, 1, False)
    distributed.barrier()
    distributed.shutdown()
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node 1: still one process, no group
    assert distributed.init_from_env(cpu) == cpu and not torch.distributed.is_initialized()


def test_rank_device_and_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA device under torchrun becomes the rank's LOCAL_RANK GPU; a CPU device stays; gloo on CPU."""
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.rank_device(torch.device("cuda")) == torch.device("cuda", 3)
    assert distributed.rank_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.delenv("LOCAL_RANK")
    assert distributed.rank_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"
