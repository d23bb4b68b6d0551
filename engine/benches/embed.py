"""Embedding throughput and store build time.

1. img/s of the engine's inference path (``engine.store.build.embed_batches``: inference_mode, large batches, bf16
   autocast + channels_last on CUDA) vs a plain eval loop (``model.eval()``, autograd on, batch 64, float32),
   measured interleaved: every round runs both paths once on the same images, the order alternating between
   rounds, so a busy spell of a shared host slows both alike. Reported: the median seconds of each path over the
   rounds, img/s at that median, and the ratio of the medians (plain / engine: > 1 means the engine path is faster).
2. The time to build a full store (``engine.store.build.build_store``) split into its stages, on the shapes test
   split (5,000 images) with a freshly initialised (or the given) checkpoint.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from engine.benches.common import interleave, print_table, write_results
from engine.data import load_dataset
from engine.methods import build_method
from engine.store.build import EmbedJob, build_store, embed_batches, resolve_device
from engine.store.format import open_store
from engine.train.checkpoint import load_model, save_checkpoint

PLAIN = "plain eval loop (autograd, b=64, fp32)"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="checkpoint to embed with (default: a new one)"
    )
    p.add_argument("--method", default="simclr", help="method of the new checkpoint (default: simclr)")
    p.add_argument(
        "--width", type=float, default=0.125, help="ResNet width of the new checkpoint (default: 0.125)"
    )
    p.add_argument("--dataset", default="shapes", help="dataset (default: shapes)")
    p.add_argument("--split", default="test", help="split (default: test, 5,000 shapes images)")
    p.add_argument("--n", type=int, default=2048, help="images for the throughput comparison (default: 2048)")
    p.add_argument("--batch", type=int, default=256, help="inference-path batch size (default: 256)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds, both paths each (default: 5)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--no-store", action="store_true", help="skip the store build timing")


def median_rows(times: Mapping[str, list[float]], items: int, baseline: str) -> list[dict]:
    """One row per case: median seconds over the rounds, ``items`` per second at that median, and ``vs_baseline``
    = baseline median / this median (> 1: faster than the baseline), and the median of the per-round ratios."""
    base = statistics.median(times[baseline])
    rows = []
    for name, secs in times.items():
        med = statistics.median(secs)
        per_round = [b / s for b, s in zip(times[baseline], secs)]
        rows.append(
            {
                "path": name,
                "items": items,
                "rounds": len(secs),
                "median_s": med,
                "items_per_s": items / med,
                "vs_baseline": base / med,
                "round_ratio_median": statistics.median(per_round),
            }
        )
    return rows


def _plain_loop(model, images: np.ndarray, device: torch.device) -> None:
    model.eval()
    for s in range(0, len(images), 64):
        x = torch.from_numpy(np.array(images[s : s + 64])).permute(0, 3, 1, 2).float().div(255).to(device)
        model.embed(x)


def _sync(device: torch.device) -> Callable[[], None] | None:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


def compare_paths(
    model, images: np.ndarray, device: torch.device, batch: int, rounds: int
) -> tuple[list[dict], str]:
    """Engine inference path vs the plain eval loop on ``images``, interleaved over ``rounds``: the rows of
    :func:`median_rows` (baseline: the plain loop) and the engine path's row name."""
    engine = f"inference path (b={batch})"
    cases = {
        PLAIN: lambda: _plain_loop(model, images, device),
        engine: lambda: embed_batches(model, images, lambda s, o: None, batch, device),
    }
    times = interleave(cases, rounds, warmup=1, sync=_sync(device))
    return median_rows(times, len(images), PLAIN), engine


def _new_checkpoint(method: str, width: float, where: Path) -> Path:

    torch.manual_seed(0)
    model = build_method(method, width=width, image_size=32)
    return save_checkpoint(where / "bench", model, config={}, epoch=0, step=0).with_suffix(".safetensors")


def run(args: argparse.Namespace) -> int:

    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="equilab-bench-embed-"))
    ckpt = args.checkpoint or _new_checkpoint(args.method, args.width, tmp)
    model, info = load_model(ckpt, device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # as build_store does
    images = np.asarray(load_dataset(args.dataset, split=args.split).images[: args.n])
    rows, engine = compare_paths(model, images, device, args.batch, args.rounds)
    print_table(
        rows,
        f"Embedding throughput, interleaved ({args.rounds} rounds, medians): {info['method']} width "
        f"{info.get('width')} on {device}, threads={torch.get_num_threads()}",
    )
    ratio = next(r for r in rows if r["path"] == engine)["vs_baseline"]
    print(f"inference path / plain loop: {ratio:.2f}x the plain loop's img/s (ratio of medians)")
    results = {"device": str(device), "rounds": args.rounds, "throughput": rows, "ratio": ratio}
    if not args.no_store:
        t0 = time.perf_counter()
        path = build_store(
            EmbedJob(ckpt, args.dataset, args.split, store_root=tmp / "stores", device=str(device))
        )
        total = time.perf_counter() - t0
        m = open_store(path).manifest
        stages = [{"stage": k, "seconds": float(v)} for k, v in m["timings_s"].items()]
        stages.append({"stage": "total (incl. model/data load, thumbs, hashing)", "seconds": total})
        print_table(stages, f"Store build: {m['n']:,} images, spaces {list(m['spaces'])}")
        results["store"] = stages
    write_results(args.out, results)
    return 0
