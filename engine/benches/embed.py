"""Embedding throughput and store build time.

1. img/s of the engine's inference path (``engine.store.build.embed_batches``: inference_mode, large batches, bf16
   autocast + channels_last on CUDA) vs a plain eval loop (``model.eval()``, autograd on, batch 64, float32).
2. The time to build a full store (``engine.store.build.build_store``) split into embed / PCA / UMAP / index, on the
   shapes test split (5,000 images) with a freshly initialised (or the given) checkpoint.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine.benches.common import print_table, time_it, write_results
from engine.data import load_dataset
from engine.methods import build_method
from engine.store.build import EmbedJob, build_store, embed_batches, resolve_device
from engine.store.format import open_store
from engine.train.checkpoint import load_model, save_checkpoint


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
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--no-store", action="store_true", help="skip the store build timing")


def _plain_loop(model, images: np.ndarray, device: torch.device) -> None:
    model.eval()
    for s in range(0, len(images), 64):
        x = torch.from_numpy(np.array(images[s : s + 64])).permute(0, 3, 1, 2).float().div(255).to(device)
        model.embed(x)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _new_checkpoint(method: str, width: float, where: Path) -> Path:

    torch.manual_seed(0)
    model = build_method(method, width=width, image_size=32)
    return save_checkpoint(where / "bench", model, config={}, epoch=0, step=0).with_suffix(".safetensors")


def run(args: argparse.Namespace) -> int:

    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="equilab-bench-embed-"))
    ckpt = args.checkpoint or _new_checkpoint(args.method, args.width, tmp)
    model, info = load_model(ckpt, device)
    images = load_dataset(args.dataset, split=args.split).images[: args.n]
    rows = []
    for name, fn in {
        "plain eval loop (autograd, b=64, fp32)": lambda: _plain_loop(model, images, device),
        f"inference path (b={args.batch})": lambda: embed_batches(
            model, images, lambda s, o: None, args.batch, device
        ),
    }.items():
        # Median of 3 after a warm-up: the machine may be shared, single runs are noisy.
        dt = float(np.median(time_it(fn, repeats=3, warmup=1, sync=lambda: _sync(device))))
        rows.append({"path": name, "images": len(images), "seconds": dt, "img_per_s": len(images) / dt})
    print_table(
        rows,
        f"Embedding throughput: {info['method']} width {info.get('width')} on {device}, threads={torch.get_num_threads()}",
    )
    results = {"device": str(device), "throughput": rows}
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
