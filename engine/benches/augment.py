"""Images/s of the batched ``engine.augment`` pipeline (SimCLR CIFAR recipe) vs a torchvision v2 per-image
Compose with the same recipe (RandomResizedCrop(32, scale=(0.2, 1), bicubic), RandomHorizontalFlip,
RandomApply([ColorJitter(.4, .4, .4, .1)], p=.8), RandomGrayscale(.2), ToDtype(float32)) on the same
32 x 32 uint8 batch, measured side by side in one run."""

from __future__ import annotations

import argparse

import torch
from torchvision.transforms import InterpolationMode, v2

from engine.augment import RECIPES, augment
from engine.benches.common import print_table, time_it, write_results
from engine.core.errors import ConfigError


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, default=512, help="images per batch (default: 512)")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="device (default: cuda when present, else cpu)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per pipeline (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the images and generators (default: 0)")


def _torchvision_compose():

    return v2.Compose(
        [
            v2.RandomResizedCrop(32, scale=(0.2, 1.0), interpolation=InterpolationMode.BICUBIC),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(0.2),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def run(args: argparse.Namespace) -> int:

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA device is visible: use --device cpu")
    g = torch.Generator(device=device).manual_seed(args.seed)
    cpu_g = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8, generator=cpu_g).to(device)
    recipe = RECIPES["simclr"]
    compose = _torchvision_compose()
    torch.manual_seed(args.seed)  # torchvision's transforms draw from the global generator
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    cases = {
        "engine.augment (batched)": lambda: augment(x, recipe, g),
        "torchvision v2 Compose (per image)": lambda: torch.stack([compose(img) for img in x]),
    }
    times = {name: time_it(fn, repeats=args.repeats, warmup=1, sync=sync) for name, fn in cases.items()}
    best = {name: min(t) for name, t in times.items()}
    ref = best["torchvision v2 Compose (per image)"]
    rows = [
        {
            "pipeline": name,
            "device": device.type,
            "batch": args.batch,
            "best_ms": best[name] * 1e3,
            "images_per_s": args.batch / best[name],
            "speedup_vs_torchvision": ref / best[name],
        }
        for name in cases
    ]
    threads = torch.get_num_threads()
    print_table(rows, f"augmentation throughput, 32x32 uint8 -> float views, threads={threads}")
    write_results(args.out, {"batch": args.batch, "device": device.type, "threads": threads, "rows": rows})
    return 0
