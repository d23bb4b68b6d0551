"""``python -m engine embed``: stream a dataset through a checkpoint into an embedding store.

Images are read in chunks of :data:`STREAM_CHUNK` (a memory-mapped cache, or ``shapes`` rendered on access at
large N), embedded, and written with their thumbnails straight into preallocated ``np.lib.format.open_memmap``
files, so nothing beyond one chunk and the memmaps is held in memory: a 1M-item store never holds its ~3 GB of
images. Under ``torchrun`` each rank embeds a contiguous shard into its own files and rank 0 merges them
(:func:`merge_shards`) before deriving projections and indexes. Every build writes ``build_report.json`` beside
its manifest: seconds per stage, wall time, peak RAM and disk (:func:`build_report`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist
from tqdm import tqdm

from engine.augment import preprocess
from engine.core import distributed as dist
from engine.core.device import resolve_device
from engine.core.errors import ConfigError, StoreError
from engine.core.io import atomic_dir, atomic_write_json, open_memmap
from engine.data import DataSpec, ImageDataset
from engine.methods.protocol import LOGIT_KEYS
from engine.store.format import Progress, StoreOptions, _thumbs, finish_store, open_store, write_meta
from engine.store.items import store_spec
from engine.train.checkpoint import data_spec, load_model, read_info, stem_of
from engine.train.config import parse_value

log = logging.getLogger(__name__)

CPU_CHUNK = 64
STREAM_CHUNK = 4096  # images read (or rendered) at once: 12 MB of 32 px images, 50 MB of 64 px ones
REPORT = "build_report.json"
SKIP_SPACES = LOGIT_KEYS  # pretext classifier outputs (rotation_logits, pretext_logits), not embedding spaces


@dataclass(frozen=True)
class EmbedJob:
    """What to embed and where the store goes."""

    checkpoint: Path
    dataset: str
    split: str = "test"
    data_root: str | None = None
    store_root: Path = Path("stores")
    batch: int = 256
    device: str = "auto"
    limit: int | None = None  # embed only the first ``limit`` items (quick checks, tests)
    data_options: Mapping | None = None  # dataset options; None = the checkpoint's (see embed_spec)

    @property
    def spec(self) -> DataSpec:
        """The data spec of the items to embed (:func:`embed_spec`)."""
        return embed_spec(self.checkpoint, self.dataset, self.split, self.data_root, self.data_options)


def checkpoint_sha(checkpoint: str | Path) -> str:
    """sha256 of the checkpoint's weights as recorded (and verified on load) by engine.train.checkpoint."""

    return str(read_info(checkpoint)["weights"]["sha256"])


def embed_spec(
    checkpoint: str | Path,
    dataset: str,
    split: str,
    root: str | None = None,
    data_options: Mapping | None = None,
) -> DataSpec:
    """The data spec a store of ``checkpoint`` on ``dataset``/``split`` embeds.

    ``data_options`` when given; else the options the checkpoint was trained with when ``dataset`` is the dataset
    it was trained on (so a run trained on a variant is embedded and evaluated on that variant); else none. The
    root is always the caller's (None: ``$EQUILAB_DATA_ROOT``), never the training machine's.
    """
    if data_options is None:
        trained = data_spec(read_info(checkpoint))
        data_options = trained.options if trained is not None and trained.name == dataset else {}
    return DataSpec(dataset, split, root, data_options)


def spec_dirname(spec: DataSpec) -> str:
    """``<dataset>-<split>``, plus a short hash of the options for a non-default variant."""
    if not spec.options:
        return f"{spec.name}-{spec.split}"
    blob = json.dumps(dict(spec.options), sort_keys=True, default=str).encode()
    return f"{spec.name}-{spec.split}-{hashlib.sha256(blob).hexdigest()[:8]}"


def store_path(
    checkpoint: str | Path,
    dataset: str,
    split: str,
    store_root: str | Path,
    data_options: Mapping | None = None,
) -> Path:
    """``<store_root>/<checkpoint stem>-<sha[:10]>/<dataset>-<split>[-<options hash>]``: one directory per
    (checkpoint, dataset variant, split); ``data_options`` as in :func:`embed_spec`."""

    spec = embed_spec(checkpoint, dataset, split, None, data_options)
    return (
        Path(store_root)
        / f"{stem_of(checkpoint).name}-{checkpoint_sha(checkpoint)[:10]}"
        / spec_dirname(spec)
    )


@torch.inference_mode()
def embed_batches(
    model: torch.nn.Module,
    images: np.ndarray,
    write: Callable[[int, dict[str, np.ndarray]], None],
    batch: int = 256,
    device: torch.device | str = "cpu",
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Call ``write(start, {space: float32 [b, D]})`` for each batch of ``images``; bf16 + channels_last on CUDA."""
    device = torch.device(device)
    size = int(getattr(model, "image_size", images.shape[1]))
    cuda = device.type == "cuda"
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    for start in range(0, len(images), batch):
        x = preprocess(images[start : start + batch], size, device)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        # On CPU, forward in chunks of CPU_CHUNK: activations of a 256-batch overflow the caches (~4x slower).
        step = len(x) if cuda else CPU_CHUNK
        with ctx:
            outs = [model.embed(x[i : i + step]) for i in range(0, len(x), step)]
        write(
            start,
            {
                k: torch.cat([o[k] for o in outs]).float().cpu().numpy()
                for k in outs[0]
                if k not in SKIP_SPACES
            },
        )
        if on_batch:
            on_batch(len(x))


def thumb_shape(image_hw: tuple[int, int], size: int) -> tuple[int, int]:
    """Side of a store thumbnail: images at most ``size`` px are kept as they are, larger ones become size x size
    (as engine.store.format writes them)."""
    h, w = image_hw
    return (h, w) if h <= size and w <= size else (size, size)


def embed_to_memmaps(
    model,
    images,
    dirpath: Path,
    dtype: str,
    batch: int,
    device,
    on_batch=None,
    rows: tuple[int, int] | None = None,
    thumb_size: int | None = None,
    timings: dict[str, float] | None = None,
    chunk: int = STREAM_CHUNK,
) -> list[str]:
    """Embed ``images[rows[0]:rows[1]]`` (default: all) into ``<dirpath>/<space>.npy`` memmaps, chunk by chunk.

    ``images`` is any indexable uint8 ``[N, H, W, 3]`` (an array, a memmap, ``shapes.RenderedImages``); each chunk
    of ``chunk`` rows is read once and, with ``thumb_size``, also written to ``thumbs.npy``. Memmaps are
    allocated on the first batch; returns the spaces. ``chunk`` sets memory use only. ``timings`` receives seconds of ``read`` (loading or
    rendering images), ``embed`` and ``thumbs``.
    """
    start, stop = rows or (0, len(images))
    n = stop - start
    times = {"read": 0.0, "embed": 0.0, "thumbs": 0.0}
    maps: dict[str, np.ndarray] = {}
    thumbs = None
    if thumb_size is not None:
        t = thumb_shape(tuple(images.shape[1:3]), thumb_size)
        thumbs = open_memmap(dirpath / "thumbs.npy", np.uint8, (n, *t, 3))

    for a in range(0, n, chunk):
        t0 = time.perf_counter()
        block = np.asarray(images[start + a : start + min(a + chunk, n)])
        t1 = time.perf_counter()

        def write(at: int, outs: dict[str, np.ndarray], base: int = a) -> None:
            for space, v in outs.items():
                if space not in maps:
                    maps[space] = open_memmap(dirpath / f"{space}.npy", dtype, (n, v.shape[1]))
                maps[space][base + at : base + at + len(v)] = v

        embed_batches(model, block, write, batch, device, on_batch)
        t2 = time.perf_counter()
        if thumbs is not None:
            thumbs[a : a + len(block)] = _thumbs(block, thumb_size)
        times["read"] += t1 - t0
        times["embed"] += t2 - t1
        times["thumbs"] += time.perf_counter() - t2
    for m in [*maps.values(), *([thumbs] if thumbs is not None else [])]:
        m.flush()
    if timings is not None:
        for k, v in times.items():
            timings[k] = timings.get(k, 0.0) + v
    return list(maps)


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous [start, stop) of rank ``rank`` out of ``world`` (sizes differ by at most one)."""
    per, extra = divmod(n, world)
    start = rank * per + min(rank, extra)
    return start, start + per + (1 if rank < extra else 0)


def merge_shards(shard_dirs: list[Path], dirpath: Path, spaces: list[str], dtype: str) -> None:
    """Concatenate per-rank ``<space>.npy`` shards (in rank order) into ``dirpath/<space>.npy`` via memmaps, and
    their ``thumbs.npy`` where the shards have them."""
    names = [*spaces, *(["thumbs"] if (shard_dirs[0] / "thumbs.npy").is_file() else [])]
    for space in names:
        parts = [np.load(d / f"{space}.npy", mmap_mode="r", allow_pickle=False) for d in shard_dirs]
        n = sum(len(p) for p in parts)
        kind = np.uint8 if space == "thumbs" else dtype
        out = open_memmap(dirpath / f"{space}.npy", kind, (n, *parts[0].shape[1:]))
        at = 0
        for p in parts:
            out[at : at + len(p)] = p
            at += len(p)
        out.flush()
        del out


def build_store(
    job: EmbedJob,
    options: StoreOptions | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    data: ImageDataset | None = None,
) -> Path:
    """Embed ``job.dataset``/``job.split`` with ``job.checkpoint`` and write the complete store atomically.

    ``data`` is the dataset to embed when the caller already holds it (default: ``job.spec.load()``); it must be
    the items ``job.spec`` names, which the manifest records. Images are streamed chunk by chunk
    (:func:`embed_to_memmaps`); the store gets a ``build_report.json`` (:func:`build_report`).
    """

    options = options or StoreOptions()
    wall0 = time.perf_counter()
    spec = job.spec
    out = store_path(job.checkpoint, job.dataset, job.split, job.store_root, spec.options)
    if out.exists() and not overwrite:
        raise StoreError(f"store {out} already exists; pass --overwrite to rebuild it.")
    device = dist.init_from_env(resolve_device(job.device))  # joins the torchrun group (WORLD_SIZE > 1)
    info = read_info(job.checkpoint)
    model, _ = load_model(job.checkpoint, device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    data = data if data is not None else spec.load()
    images, labels, meta = data.images, data.labels, data.meta
    n = len(labels) if job.limit is None else min(job.limit, len(labels))
    if (note := limit_note(labels, n)) is not None:
        log.warning("%s/%s: %s", job.dataset, job.split, note)
    labels = np.asarray(labels[:n])
    meta = {k: np.asarray(v)[:n] for k, v in meta.items()}
    done = [0]

    def on_batch(b: int) -> None:
        done[0] += b
        if progress:
            progress(0.6 * done[0] / n, f"embedding {done[0]:,}/{n:,} images")

    timings: dict[str, float] = {}
    shard_dirs, spaces = _embed_shard(model, images, n, out, options, job, device, on_batch, timings)
    if shard_dirs is None:
        dist.barrier()  # a non-zero rank: wait until rank 0 has merged and finished the store
        return out
    with atomic_dir(out, overwrite=True) as tmp:
        if shard_dirs:
            t0 = time.perf_counter()
            merge_shards(shard_dirs, tmp, spaces, options.dtype)
            for d in shard_dirs:
                shutil.rmtree(d, ignore_errors=True)
            timings["merge"] = time.perf_counter() - t0
        else:
            spaces = embed_to_memmaps(
                model,
                images,
                tmp,
                options.dtype,
                job.batch,
                device,
                on_batch,
                rows=(0, n),
                thumb_size=options.thumb_size,
                timings=timings,
            )
        if progress:
            progress(0.6, "writing metadata")
        write_meta(tmp, labels, meta)
        source = {
            "checkpoint": str(Path(job.checkpoint).resolve()),
            "checkpoint_sha256": info["weights"]["sha256"],
            "method": info.get("method"),
            "dataset": job.dataset,
            "split": job.split,
            "data_root": job.data_root,
            "store_root": str(job.store_root),
            "limit": job.limit,
            "data": spec.to_dict(),
            "shards": dist.world_size(),  # processes that embedded it (torchrun ranks); 1 = one process
        }
        meta = {"spaces": spaces, "n": n, "classes": data.classes, "labels": labels, "timings": timings}
        manifest = finish_store(tmp, source, meta, options, progress)
    atomic_write_json(out / REPORT, build_report(out, manifest, time.perf_counter() - wall0))
    dist.barrier()  # the other ranks return once the store exists
    if progress:
        progress(1.0, "store ready")
    return out


def limit_note(labels: np.ndarray, n: int) -> str | None:
    """A warning when a ``--limit`` prefix of a split misses classes the split has (a folder stored class by class:
    CIFAR-10's first 1,000 test images are all airplanes); None when the prefix has every class, or no labels."""
    labels = np.asarray(labels)
    have, want = np.unique(labels[:n][labels[:n] >= 0]), np.unique(labels[labels >= 0])
    if n >= len(labels) or len(have) == len(want):
        return None
    return (
        f"the first {n:,} items hold {len(have)} of the split's {len(want)} classes (it is stored class by class); "
        "the store's map, retrieval and probes see only those. Drop --limit for the whole split."
    )


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``getrusage``: KiB on Linux), in bytes.

    Counts memory-mapped file pages the process touched (store files, images), so it bounds what the build held.
    """
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def build_report(path: Path, manifest: dict, wall_s: float) -> dict:
    """What a build cost: ``n``, ``seconds`` per stage (the manifest's ``timings_s``: read = loading or rendering
    images, embed, thumbs, pca, umap, index, ...), ``wall_s``, ``peak_rss_bytes`` (:func:`peak_rss_bytes`) and
    ``disk_bytes`` (sum of the store's files in the manifest)."""
    return {
        "n": manifest["n"],
        "spaces": list(manifest["spaces"]),
        "seconds": manifest.get("timings_s", {}),
        "wall_s": wall_s,
        "peak_rss_bytes": peak_rss_bytes(),
        "disk_bytes": sum(int(f["size"]) for f in manifest["files"].values()),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "store": str(path),
    }


def _embed_shard(
    model, images, n: int, out: Path, options: StoreOptions, job: EmbedJob, device, on_batch, timings
):
    """Under torchrun: embed this rank's shard of the first ``n`` items into ``.<name>.shard<r>/`` (with its
    thumbnails), wait for all ranks.

    Returns ([], []) on a single process (the caller embeds directly), (shard dirs, spaces) on rank 0 and
    (None, spaces) on the other ranks.
    """

    if not dist.is_distributed():
        return [], []

    r, world = dist.rank(), dist.world_size()
    dirs = [out.parent / f".{out.name}.shard{i}" for i in range(world)]
    dirs[r].mkdir(parents=True, exist_ok=True)
    spaces = embed_to_memmaps(
        model,
        images,
        dirs[r],
        options.dtype,
        job.batch,
        device,
        on_batch,
        rows=shard_range(n, r, world),
        thumb_size=options.thumb_size,
        timings=timings,
    )
    tdist.barrier()
    return (dirs if r == 0 else None), spaces


def ensure_store(
    checkpoint: str | Path,
    dataset: str,
    split: str = "test",
    root: str | None = None,
    store_root: str | Path | None = None,
    progress: Progress | None = None,
    options: StoreOptions | None = None,
    data_options: Mapping | None = None,
) -> Path:
    """The store of (checkpoint, dataset, split) under ``store_root``, built if missing or stale; returns its path.

    ``root`` is the dataset root (as ``--data-root``); ``store_root`` defaults to ``$EQUILAB_STORES`` or
    ``stores/``; ``data_options`` as in :func:`embed_spec`. A store is stale when its files fail the size check, or
    it was built from another checkpoint or other items.
    """
    options = options or StoreOptions()
    store_root = Path(store_root or os.environ.get("EQUILAB_STORES") or "stores")
    spec = embed_spec(checkpoint, dataset, split, root, data_options)
    out = store_path(checkpoint, dataset, split, store_root, spec.options)
    if out.exists():
        try:
            store = open_store(out, verify=False, expect_checkpoint_sha=checkpoint_sha(checkpoint))
            if store.manifest["source"].get("limit") is not None:
                raise StoreError(f"{out} holds only a --limit subset")
            if not store_spec(store.manifest).same_items(spec):
                raise StoreError(f"{out} holds other items than {spec.to_dict()}")
            if progress:
                progress(1.0, "store ready")
            return out
        except StoreError:
            pass  # damaged or stale: rebuild below
    job = EmbedJob(Path(checkpoint), dataset, split, root, store_root, data_options=spec.options)
    return build_store(job, options, progress, overwrite=True)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed a dataset split with a checkpoint into a store (embeddings, UMAP/PCA, FAISS index)",
        description="Embed every image of DATASET/SPLIT with CHECKPOINT and write a verified store directory "
        "<out>/<checkpoint>-<sha>/<dataset>-<split>/ (manifest.json, <space>.npy, meta.parquet, thumbs.npy, "
        "PCA and UMAP coordinates, FAISS index per space).",
    )
    p.add_argument(
        "--checkpoint", required=True, type=Path, help="checkpoint .safetensors (or its .json/stem)"
    )
    p.add_argument(
        "--dataset", required=True, help="dataset name (shapes, cifar10, cifar100, stl10, imagefolder)"
    )
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument(
        "--data-root", default=None, help="dataset root for file-backed datasets (else $EQUILAB_DATA_ROOT)"
    )
    p.add_argument("--out", type=Path, default=Path("stores"), help="store root directory (default: stores/)")
    p.add_argument("--batch", type=int, default=256, help="images per forward pass (default: 256)")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu or cuda[:i] (default: auto)"
    )
    p.add_argument(
        "--float16", action="store_true", help="store embeddings as float16 (halves disk; large N)"
    )
    p.add_argument(
        "--no-umap", action="store_true", help="skip UMAP coordinates (PCA and index are always built)"
    )
    p.add_argument(
        "--umap-seed", type=int, default=0, help="UMAP random seed, recorded in the manifest (default: 0)"
    )
    p.add_argument(
        "--umap-sample",
        type=int,
        default=20_000,
        help="fit UMAP on at most this many items (stratified), transform the rest (default: 20000)",
    )
    p.add_argument(
        "--exact-max",
        type=int,
        default=None,
        help="exact FAISS index up to this N (default: by N x D, engine.store.index.EXACT_WORK); above it an "
        "approximate index tuned at build time to --target-recall",
    )
    p.add_argument(
        "--target-recall",
        type=float,
        default=0.95,
        help="recall@10 the approximate index is tuned to on held-out items (default: 0.95)",
    )
    p.add_argument(
        "--index",
        choices=("auto", "flat", "hnsw", "ivfpq"),
        default="auto",
        help="index kind (default: auto = exact while cheap, else HNSW)",
    )
    p.add_argument(
        "--data-option",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="dataset option (repeatable, e.g. seed=3); when given, these replace the options the checkpoint was "
        "trained with, which are used by default when DATASET is its training dataset",
    )
    p.add_argument("--limit", type=int, default=None, help="embed only the first N items (quick checks)")
    p.add_argument("--overwrite", action="store_true", help="rebuild the store if it already exists")
    p.set_defaults(func=_cmd_embed)


def parse_data_options(items: list[str] | None) -> dict | None:
    """``["seed=3", "orientation=upright"]`` -> ``{"seed": 3, "orientation": "upright"}`` (YAML scalars); None
    when no option is given (the checkpoint's are used)."""
    if items is None:
        return None
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--data-option {item!r}: expected KEY=VALUE, e.g. seed=3")
        out[key.strip()] = parse_value(value)
    return out


def _cmd_embed(args: argparse.Namespace) -> int:

    options = StoreOptions(
        dtype="float16" if args.float16 else "float32",
        exact_max=args.exact_max,
        target_recall=args.target_recall,
        index_kind=args.index,
        umap=not args.no_umap,
        umap_seed=args.umap_seed,
        umap_sample_cap=args.umap_sample,
    )
    job = EmbedJob(
        args.checkpoint,
        args.dataset,
        args.split,
        args.data_root,
        args.out,
        args.batch,
        args.device,
        args.limit,
        parse_data_options(args.data_option),
    )
    with tqdm(total=1000, unit="‰", desc="store") as bar:

        def progress(frac: float, msg: str) -> None:
            bar.set_postfix_str(msg)
            bar.update(int(frac * 1000) - bar.n)

        t0 = time.perf_counter()
        path = build_store(job, options, progress, overwrite=args.overwrite)
    is_rank0 = dist.rank() == 0
    dist.shutdown()
    if not is_rank0:
        return 0  # rank 0 reports the merged store
    m = open_store(path).manifest
    times = " ".join(f"{k} {v:.1f}s" for k, v in m["timings_s"].items())
    print(f"{path}  N={m['n']:,}  spaces={list(m['spaces'])}  {time.perf_counter() - t0:.1f}s ({times})")
    rep = json.loads((path / REPORT).read_text())
    print(
        f"peak RAM {rep['peak_rss_bytes'] / 2**30:.2f} GiB, disk {rep['disk_bytes'] / 2**30:.2f} GiB "
        f"(report: {path / REPORT})"
    )
    return 0
