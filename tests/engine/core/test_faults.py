"""Real faults on the engine's writers, each caused for real in a child process.

* disk full: ``RLIMIT_FSIZE`` (the kernel fails writes past N bytes with EFBIG; works everywhere) and, where
  ``mount`` works, a tiny tmpfs filled up to a few KiB (ENOSPC);
* read-only output directory: a 0555 directory, written by a child that gives up root's permission override;
* killed mid-write: the kernel's SIGXFSZ kills a checkpoint write half-way; SIGKILL during a store build.

Every case checks the clear error (an EquiLabError naming the path and the cause) and that what was saved
before is byte-identical afterwards, with no temporary file left behind (or, after a kill, only hidden ones).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.core.errors import StoreError
from engine.data import load_dataset
from engine.methods import build_method
from engine.store.build import EmbedJob, build_store, ensure_store, store_path
from engine.store.format import StoreOptions, open_store
from engine.train.checkpoint import load_model, load_train_state, read_info, save_checkpoint

REPO = Path(__file__).resolve().parents[3]
NOBODY = 65534
PR_CAPBSET_DROP, DAC_CAPS = 24, (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
KIB = 1024
STORE_ITEMS = 64  # --limit of the small stores (thumbnails alone are 64 * 32 * 32 * 3 = 196,608 bytes)

# Child: load the checkpoint at argv[1], take one optimizer step, save it again over the same stem.
SAVE_SCRIPT = """
import json, signal, sys
import torch
from engine.train.checkpoint import load_model, save_checkpoint
from engine.core.errors import EquiLabError
stem, die = sys.argv[1], sys.argv[2] == "die"
if die:  # Python ignores SIGXFSZ; restore the kernel's default: the write past the limit kills the process
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
model, info = load_model(stem)
model.train()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
model({"x1": x, "x2": x.flip(-1)})["loss"].backward()
opt.step()
try:
    save_checkpoint(stem, model, config={}, epoch=info["epoch"] + 1, step=info["step"] + 10, optimizer=opt)
    print(json.dumps({"saved": True}))
except EquiLabError as e:
    print(json.dumps({"error": [c.__name__ for c in type(e).__mro__], "message": str(e)}))
"""

# Child: rebuild (overwrite) the small store of checkpoint argv[1] under store root argv[2].
STORE_SCRIPT = """
import json, sys
from pathlib import Path
from engine.store.build import EmbedJob, build_store
from engine.core.errors import EquiLabError
from engine.store.format import StoreOptions
job = EmbedJob(Path(sys.argv[1]), "shapes", "test", store_root=Path(sys.argv[2]), batch=32, device="cpu",
               limit=int(sys.argv[3]))
try:
    build_store(job, StoreOptions(umap=False), overwrite=True)
    print(json.dumps({"saved": True}))
except EquiLabError as e:
    print(json.dumps({"error": [c.__name__ for c in type(e).__mro__], "message": str(e)}))
"""


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def _drop_root() -> None:
    """Make permission bits bind (preexec): root loses the capabilities that override them, else becomes nobody.

    Dropping capabilities keeps uid 0, so an interpreter under a 0700 home (pyenv in /root) still starts.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if all(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0 for cap in DAC_CAPS):
        return  # after exec, root without these obeys the permission bits like anyone else
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _child(script: str, *args: str, fsize: int | None = None, drop: bool = False, env=None):
    """Run ``script`` in a fresh interpreter with a file-size limit and/or as ``nobody`` (when root)."""

    def limits() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if drop:
            _drop_root()

    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env=env or _env(),
        preexec_fn=limits,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _outcome(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def digest(root: Path) -> dict[str, str]:
    """sha256 of every visible file under ``root`` (relative path -> hex)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def hidden(root: Path) -> list[str]:
    """Names of leftover temporaries (the atomic writers' ``.<name>.<random>.tmp`` files and directories)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def _checkpoint(stem: Path, method: str = "simclr") -> Path:
    """A width-0.0625 checkpoint with optimizer state (like the trainer's ``last``); returns the json."""
    torch.manual_seed(0)
    model = build_method(method, width=0.0625, image_size=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if method != "none":
        x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        model({"x1": x, "x2": x.flip(-1)})["loss"].backward()
        opt.step()
    return save_checkpoint(stem, model, config={}, epoch=3, step=30, metrics={"knn_acc": 0.5}, optimizer=opt)


def _loads_intact(stem: Path) -> None:
    model, info = load_model(stem)  # verifies the weights' sha256 against the sidecar
    assert (info["epoch"], info["step"]) == (3, 30)
    load_train_state(stem, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))  # and the state's


def _sizes(stem: Path) -> tuple[int, int]:
    return stem.with_suffix(".state").stat().st_size, stem.with_suffix(".safetensors").stat().st_size


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator:
    """``mount(size)`` -> a fresh tmpfs directory, or None where mounting is not allowed; always unmounted."""
    mounted: list[Path] = []

    def mount(size: int) -> Path | None:
        d = tmp_path / f"tmpfs{len(mounted)}"
        d.mkdir()
        try:
            r = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True
            )
        except OSError:  # no mount binary
            return None
        if r.returncode != 0:
            return None
        mounted.append(d)
        return d

    try:
        yield mount
    finally:
        for d in mounted:
            subprocess.run(["umount", str(d)], check=False)


def _fill(disk: Path, leave: int) -> None:
    """Fill the file system of ``disk`` with one file, then shrink it so that about ``leave`` bytes stay free."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (64 * KIB))
                f.flush()
        except OSError:
            pass
    page = os.statvfs(disk).f_frsize
    os.truncate(
        filler, max(0, filler.stat().st_size - leave) // page * page
    )  # whole pages, or one stays used
    free = os.statvfs(disk).f_bavail * page
    assert leave <= free < leave + 64 * KIB, free


def _disk(kind: str, tmp_path: Path, tmpfs, size: int) -> Path:
    if kind == "fsize":
        return tmp_path / "disk"
    d = tmpfs(size)
    if d is None:
        pytest.skip(
            "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the fsize cases cover disk-full"
        )
    return d


# ---- disk full -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fails_at"),
    [("fsize", "state"), ("fsize", "weights"), ("tmpfs", "weights")],
)
def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one(kind, fails_at, tmp_path, tmpfs) -> None:
    disk = _disk(kind, tmp_path, tmpfs, 4 << 20)
    stem = disk / "run" / "checkpoints" / "last"
    _checkpoint(stem)
    before = digest(disk / "run")
    state, weights = _sizes(stem)
    assert state < weights  # so a limit between the two lets the .state through and stops the weights
    limit = 4 * KIB if fails_at == "state" else (state + weights) // 2
    if kind == "tmpfs":
        _fill(disk, leave=state + 16 * KIB)  # room for the new .state, not for the weights too
    got = _outcome(_child(SAVE_SCRIPT, str(stem), "keep", fsize=limit if kind == "fsize" else None))
    assert "WriteError" in got["error"] and "EquiLabError" in got["error"], got
    target = stem.with_suffix(f".{fails_at}" if fails_at == "state" else ".safetensors")
    assert f"cannot write {target}" in got["message"]
    cause = "file too large" if kind == "fsize" else "the disk is full"
    assert cause in got["message"] and "Nothing was changed" in got["message"]
    assert digest(disk / "run") == before  # byte-identical: .state, .safetensors and .json
    assert hidden(disk / "run") == []  # no temporary left behind
    _loads_intact(stem)
    # the same save succeeds once the fault is gone, and replaces all three files together
    if kind == "tmpfs":
        (disk / "filler").unlink()
    assert _outcome(_child(SAVE_SCRIPT, str(stem), "keep")) == {"saved": True}
    assert read_info(stem)["epoch"] == 4 and set(digest(disk / "run").values()).isdisjoint(before.values())


@pytest.fixture(scope="module")
def none_checkpoint(tmp_path_factory) -> Path:
    """A random-init ``none`` checkpoint (backbone space only: the fastest to embed)."""

    load_dataset("shapes", "test")  # generate the split once; children read it from the shared cache
    return _checkpoint(tmp_path_factory.mktemp("ck") / "none", method="none").with_suffix(".safetensors")


def _small_store(ckpt: Path, root: Path) -> Path:
    job = EmbedJob(ckpt, "shapes", "test", store_root=root, batch=32, device="cpu", limit=STORE_ITEMS)
    return build_store(job, StoreOptions(umap=False))


@pytest.mark.parametrize("kind", ["fsize", "tmpfs"])
def test_disk_full_while_building_a_store_keeps_the_previous_one(kind, none_checkpoint, tmp_path, tmpfs):
    disk = _disk(kind, tmp_path, tmpfs, 4 << 20)
    root = disk / "stores"
    store = _small_store(none_checkpoint, root)
    before = digest(root)
    thumbs = (store / "thumbs.npy").stat().st_size
    if kind == "tmpfs":
        # A memmap over a sparse file on a full tmpfs dies with SIGBUS unless its blocks are reserved first.
        _fill(disk, leave=thumbs // 4)
    limit = thumbs // 4 if kind == "fsize" else None
    got = _outcome(_child(STORE_SCRIPT, str(none_checkpoint), str(root), str(STORE_ITEMS), fsize=limit))
    assert "WriteError" in got["error"] and "EquiLabError" in got["error"], got
    assert f"cannot write {store}" in got["message"]
    cause = "file too large" if kind == "fsize" else "the disk is full"
    assert cause in got["message"] and "Nothing was changed" in got["message"]
    assert digest(root) == before and hidden(root) == []
    assert open_store(store).n == STORE_ITEMS  # still verifies, every sha256


# ---- read-only output directory --------------------------------------------------------------------------


@pytest.fixture()
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` can reach (pytest's own tmp dirs are 0700 root-only); removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="equilab-ro-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        for p in [d, *d.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o755)
        shutil.rmtree(d)


def _read_only(*dirs: Path) -> None:
    for d in dirs:
        os.chmod(d, 0o555)
    if os.geteuid() != 0:
        assert not os.access(dirs[-1], os.W_OK)


def test_read_only_checkpoint_directory(shared_dir: Path) -> None:
    stem = shared_dir / "run" / "checkpoints" / "last"
    _checkpoint(stem)
    before = digest(shared_dir)
    _read_only(stem.parent)
    got = _outcome(_child(SAVE_SCRIPT, str(stem), "keep", drop=True, env=_env(HOME=str(shared_dir))))
    assert "WriteError" in got["error"], got
    assert f"cannot write {stem}.state: permission denied" in got["message"]
    assert digest(shared_dir) == before and hidden(shared_dir) == []
    _loads_intact(stem)


def test_read_only_store_directory(shared_dir: Path, none_checkpoint: Path) -> None:
    ckpt = shared_dir / "ck" / "none.safetensors"
    ckpt.parent.mkdir()
    for p in none_checkpoint.parent.glob("none.*"):
        shutil.copy(p, ckpt.parent / p.name)
    store = _small_store(ckpt, shared_dir / "stores")
    before = digest(shared_dir)
    cache = (
        shared_dir / "cache"
    )  # the child (nobody) cannot read root's 0700 pytest cache: it generates its own
    cache.mkdir(mode=0o777)
    os.chmod(cache, 0o777)
    _read_only(store.parent.parent, store.parent, store)
    env = _env(HOME=str(shared_dir), EQUILAB_CACHE=str(cache))
    got = _outcome(_child(STORE_SCRIPT, str(ckpt), str(shared_dir / "stores"), "16", drop=True, env=env))
    assert "WriteError" in got["error"], got
    assert f"cannot write {store}: permission denied" in got["message"]
    shutil.rmtree(cache)
    assert digest(shared_dir) == before and hidden(shared_dir) == []
    assert open_store(store).n == STORE_ITEMS


# ---- killed mid-write ------------------------------------------------------------------------------------


def test_checkpoint_write_killed_by_the_kernel_keeps_the_previous_one(tmp_path: Path) -> None:
    stem = tmp_path / "run" / "checkpoints" / "last"
    _checkpoint(stem)
    before = digest(tmp_path / "run")
    state, weights = _sizes(stem)
    # The new .state is written completely, then SIGXFSZ kills the process inside the weights write.
    proc = _child(SAVE_SCRIPT, str(stem), "die", fsize=(state + weights) // 2)
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr[-3000:]
    assert digest(tmp_path / "run") == before  # not even the complete new .state replaced the old one
    left = hidden(tmp_path / "run")
    # only hidden temporaries: ours (.last.<suffix>.<random>.tmp) and safetensors' own (.tmp<random>)
    assert left and all(
        n.split("/")[-1].startswith((".last.state.", ".last.safetensors.", ".tmp")) for n in left
    )
    _loads_intact(stem)


def test_store_build_killed_midway_leaves_no_store_and_a_rerun_completes_it(none_checkpoint, tmp_path):
    root = tmp_path / "stores"
    final = store_path(none_checkpoint, "shapes", "test", root)
    cmd = [
        sys.executable,
        "-m",
        "engine",
        "embed",
        "--checkpoint",
        str(none_checkpoint),
        "--dataset",
        "shapes",
    ]
    cmd += ["--out", str(root), "--batch", "8", "--device", "cpu", "--no-umap"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = b""
    try:
        while b"embedding " not in seen:  # the progress bar after the first batch: embedding has started
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, f"embed ended before embedding started: {seen[-2000:]!r}"
            seen += chunk
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not final.exists()
    assert all(p.name.startswith(".") for p in final.parent.iterdir())  # only the hidden build directory
    assert hidden(root)  # (it was really killed inside the build)
    with pytest.raises(StoreError, match=r"does not exist; rebuild it with: python -m engine embed"):
        open_store(final)
    assert (
        ensure_store(none_checkpoint, "shapes", "test", store_root=root, options=StoreOptions(umap=False))
        == final
    )
    s = open_store(final)
    assert s.n == 5000 and s.manifest["source"]["limit"] is None

    model, _ = load_model(none_checkpoint)
    x = (
        torch.from_numpy(np.array(load_dataset("shapes", "test").images[-4:])).permute(0, 3, 1, 2).float()
        / 255
    )
    with torch.no_grad():
        want = model.embed(x)["backbone"].numpy()
    np.testing.assert_allclose(s.embeddings("backbone")[-4:], want, atol=1e-5)  # the last batch too
