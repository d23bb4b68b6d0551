"""Training step time per method relative to SimCLR, and SimCLR relative to a plain reference loop.

One step = make the views from a uint8 batch + forward + backward + SGD step, timed with device syncs. The
reference is what one would write straightforwardly: torchvision per-image augmentation (RandomResizedCrop,
flip, ColorJitter, grayscale) on the CPU, a plain CIFAR ResNet-18 of the same width written below, the usual
eye-masked NT-Xent, ``loss.backward()``, ``opt.step()``. On CUDA both run under bf16 autocast with
channels_last (as the trainer does) and img/s and peak memory are reported too.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from engine.benches.common import print_table, time_it, write_results
from engine.core.errors import ConfigError
from engine.methods import METHODS, build_method


# ---------------------------------------------------------------------------------------------------------------
# Plain reference: straightforward model, augmentation and loss (deliberately not using engine code).
class _PlainBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.c2, self.b2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.sc = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.sc = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.sc(x))


class _PlainSimCLR(nn.Module):
    def __init__(self, width: float) -> None:
        super().__init__()
        c = [max(4, round(64 * width * 2**i)) for i in range(4)]
        layers: list[nn.Module] = [nn.Conv2d(3, c[0], 3, 1, 1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU()]
        c_in = c[0]
        for i, c_out in enumerate(c):
            layers += [_PlainBlock(c_in, c_out, 1 if i == 0 else 2), _PlainBlock(c_out, c_out, 1)]
            c_in = c_out
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        hidden = max(128, round(2048 * min(1.0, c_in / 512)))
        self.head = nn.Sequential(
            nn.Linear(c_in, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 128)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _plain_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / tau
    n = z1.shape[0]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -1e9)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


def _plain_transform(size: int):

    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


# ---------------------------------------------------------------------------------------------------------------
def _sync(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and device.type == "cuda" else x


def _engine_step(name: str, args: argparse.Namespace, images: torch.Tensor, device: torch.device):

    model = build_method(name, width=args.width, image_size=args.size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.03 * model.config.lr_scale, momentum=0.9, weight_decay=5e-4
    )
    gen = torch.Generator(device=device).manual_seed(0)
    trainable = getattr(METHODS[name], "trainable", True)

    def step() -> None:
        views = {k: _to_device(v, device) for k, v in model.make_views(images, gen).items()}
        with _autocast(device):
            loss = model(views)["loss"]
        if trainable:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return step


def _reference_step(args: argparse.Namespace, images: torch.Tensor, device: torch.device):
    model = _PlainSimCLR(args.width).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
    tf = _plain_transform(args.size)
    cpu_images = images.cpu()

    def step() -> None:
        x1 = torch.stack([tf(img) for img in cpu_images])
        x2 = torch.stack([tf(img) for img in cpu_images])
        x1, x2 = _to_device(x1, device), _to_device(x2, device)
        with _autocast(device):
            z = model(torch.cat([x1, x2]))
            loss = _plain_nt_xent(z[: len(x1)], z[len(x1) :])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _measure(step, args: argparse.Namespace, device: torch.device) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    secs = time_it(step, repeats=args.steps, warmup=args.warmup, sync=_sync(device))
    ms = 1e3 * min(secs)  # best of N: robust to other processes on a shared host; median kept for reference
    row = {"step_ms": ms, "median_ms": 1e3 * sorted(secs)[len(secs) // 2], "img_s": args.batch / (ms / 1e3)}
    if device.type == "cuda":
        row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--width", type=float, default=0.125, help="ResNet-18 channel width multiplier (1.0 = paper)"
    )
    p.add_argument("--batch", type=int, default=256, help="images per step (each method makes its own views)")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (CIFAR: 32)")
    p.add_argument(
        "--steps",
        type=int,
        default=5,
        help="timed steps per method (best and median reported; ratios use the best)",
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing each method")
    p.add_argument(
        "--methods",
        default="simclr,essl,equimod,clever,rotation",
        help="comma-separated methods to time (simclr is always included as the baseline)",
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        choices=["cpu", "cuda"],
        help="where to run (default: cuda when available)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch (0 = torch's default; 1 is steadier on a busy host)",
    )
    p.add_argument("--no-reference", action="store_true", help="skip the plain reference loop")


def run(args: argparse.Namespace) -> int:

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but CUDA is not available; use --device cpu")
    names = ["simclr", *[m for m in args.methods.split(",") if m and m != "simclr"]]
    for m in names:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r} in --methods; choose from {sorted(METHODS)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, generator=gen)
    images_dev = images.to(device)
    rows = []
    for m in names:
        rows.append({"method": m, **_measure(_engine_step(m, args, images_dev, device), args, device)})
    base = rows[0]["step_ms"]
    for r in rows:
        r["vs_simclr"] = r["step_ms"] / base
    if not args.no_reference:
        ref = {
            "method": "reference (plain SimCLR loop)",
            **_measure(_reference_step(args, images, device), args, device),
        }
        ref["vs_simclr"] = ref["step_ms"] / base
        rows.append(ref)
    title = (
        f"train step (views+fwd+bwd+SGD), batch {args.batch}, {args.size}px, width {args.width}, "
        f"device {device.type}{', bf16 autocast + channels_last' if device.type == 'cuda' else ''}"
    )
    print_table(rows, title)
    if not args.no_reference:
        print(f"SimCLR engine step is {rows[-1]['step_ms'] / base:.2f}x faster than the plain reference loop")
    write_results(
        args.out,
        {
            "bench": "train",
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "args": {k: v for k, v in vars(args).items() if k not in ("func",)},
            "rows": rows,
        },
    )
    return 0
