"""One-command GPU check (``python -m engine bench gpu``): the first thing to run on a machine with a GPU.

On CUDA (about 5-10 minutes on one modern GPU; items 3 and 4 run first; ``--budget-s`` starts no new item after
that many seconds):

1. every trainable method's training step (views + forward + backward + SGD) on a full-width CIFAR ResNet-18,
   batch 512, 32 px, under bf16 autocast + channels_last (``engine.benches.train``), eager and ``torch.compile``d
   (as ``train.compile=true`` compiles the module's forward), measured interleaved round by round: medians and
   the ratio eager / compiled; the compiled row's setting says how long the first (compiling) call took;
2. the CIFAR-10 epoch time of that model: 97 steps (50,000 images, the last partial batch of 512 dropped as the
   trainer does) x SimCLR's median step (compiled when it compiled, else eager); steps only (the trainer keeps
   the uint8 images on the device and augments there), no kNN monitor, no checkpoint writes;
3. GPU augmentation throughput: ``engine.augment.augment`` (batched, on the device) vs torchvision v2's per-image
   Compose of the same recipe (``engine.benches.augment``), interleaved;
4. embedding throughput: the store's inference path vs a plain eval loop (``engine.benches.embed``), interleaved,
   full-width SimCLR on random 32 px images.

One table is printed (``--out`` writes it as JSON). On a machine without CUDA it runs a tiny version of each item
(width 0.0625, batch 16, float32, eager, 2 rounds) so the check itself is exercised, and prints one ``skipped:`` line per
part it cannot do there, saying why.
"""

from __future__ import annotations

import argparse
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from engine.augment import RECIPES, augment
from engine.benches import train as train_bench
from engine.benches.augment import _torchvision_compose
from engine.benches.common import interleave, print_table, write_results
from engine.benches.embed import PLAIN, compare_paths
from engine.core.device import resolve_device
from engine.core.errors import ConfigError
from engine.methods import METHODS, build_method

CIFAR10_TRAIN = 50_000


@dataclass(frozen=True)
class Settings:
    """The sizes of one run of the check (:data:`ON_GPU` or the tiny :data:`ON_CPU`)."""

    width: float
    batch: int
    rounds: int
    compile: bool
    aug_batch: int
    embed_n: int
    embed_batch: int
    size: int = 32


ON_GPU = Settings(
    width=1.0, batch=512, rounds=5, compile=True, aug_batch=1024, embed_n=8192, embed_batch=1024
)
ON_CPU = Settings(width=0.0625, batch=16, rounds=2, compile=False, aug_batch=32, embed_n=64, embed_batch=32)

CPU_SKIPS = (
    "skipped: bf16 autocast + channels_last: CUDA only (the trainer runs float32 on the CPU; so does this check)",
    "skipped: torch.compile: on CUDA only here (compiling every method takes minutes on a few CPU cores, and "
    "speed on the CPU is not what this check is for)",
    "skipped: full-width ResNet-18 (width 1, batch 512) steps and CIFAR-10 epoch time: need CUDA (a width-1 "
    "epoch takes hours on a CPU); the rows above use width 0.0625, batch 16",
)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu or cuda[:i] (default: auto)"
    )
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated methods to step (default: every trainable method; simclr is always included)",
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds per item (default: 5, CPU: 2)"
    )
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument(
        "--budget-s",
        type=float,
        default=540.0,
        help="start no new item after this many seconds; the rest is listed as skipped (default: 540)",
    )


def settings_for(device: torch.device, rounds: int | None, no_compile: bool) -> Settings:
    """:data:`ON_GPU` on CUDA, else :data:`ON_CPU`; ``rounds`` and ``no_compile`` override."""
    s = ON_GPU if device.type == "cuda" else ON_CPU
    if rounds is not None:
        if rounds < 1:
            raise ConfigError(f"--rounds {rounds}: need at least 1 round")
        s = replace(s, rounds=rounds)
    return replace(s, compile=False) if no_compile else s


def method_names(spec: str | None) -> list[str]:
    """``simclr`` first, then the requested (default: every trainable) methods; ConfigError for unknown names."""
    trainable = [m for m, cls in METHODS.items() if getattr(cls, "trainable", True)]
    asked = trainable if spec is None else [m.strip() for m in spec.split(",") if m.strip()]
    for m in asked:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r} in --methods; choose from {sorted(METHODS)}")
    return ["simclr", *[m for m in asked if m != "simclr"]]


def epoch_steps(n_train: int, batch: int) -> int:
    """Steps of one epoch: full batches only (the trainer drops the last partial batch)."""
    return n_train // batch


def _row(item: str, setting: str, median: float, unit: str, per_s: float, ratio, vs: str) -> dict:
    return {
        "item": item,
        "setting": setting,
        "median": median,
        "unit": unit,
        "img_per_s": per_s,
        "ratio": ratio,
        "vs": vs,
    }


def _compiled_step(name: str, args: argparse.Namespace, images: torch.Tensor, device: torch.device):
    """``engine.benches.train``'s engine step with the module's forward under ``torch.compile`` (as the trainer
    does with ``train.compile=true``)."""
    model = build_method(name, width=args.width, image_size=args.size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.03 * model.config.lr_scale, momentum=0.9, weight_decay=5e-4
    )
    gen = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        views = {k: train_bench._to_device(v, device) for k, v in model.make_views(images, gen).items()}
        with train_bench._autocast(device):
            loss = fwd(views)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _timed_once(fn: Callable[[], None], sync) -> float:
    t0 = time.perf_counter()
    fn()
    if sync:
        sync()
    return time.perf_counter() - t0


def _failed(what: str, e: Exception, skipped: list[str], errors: dict[str, str] | None) -> None:
    """One ``skipped:`` line for the table and, in ``errors`` (the JSON's), the whole traceback: a compiler's
    message names its real cause pages below the first 200 characters."""
    skipped.append(f'skipped: {what}: failed ({type(e).__name__}: {str(e)[:200]}); the whole error: "errors"')
    if errors is not None:
        errors[what] = "".join(traceback.format_exception(e))[-50_000:]


def method_rows(
    name: str,
    s: Settings,
    images: torch.Tensor,
    device: torch.device,
    skipped: list[str],
    errors: dict[str, str] | None = None,
) -> list[dict]:
    """Eager (and compiled) training step of ``name``, interleaved over ``s.rounds``; a compiler failure leaves the
    eager row, a ``skipped:`` line and its traceback in ``errors``."""
    args = argparse.Namespace(width=s.width, size=s.size)
    sync = train_bench._sync(device)
    precision = "bf16+channels_last" if device.type == "cuda" else "fp32"
    label = f"w{s.width:g} b{s.batch} {precision}"
    cases = {"eager": train_bench._engine_step(name, args, images, device)}
    compile_s = None
    if s.compile and getattr(METHODS[name], "trainable", True):  # `none` takes no step to compile
        try:
            compiled = _compiled_step(name, args, images, device)
            compile_s = _timed_once(compiled, sync)  # the first call compiles forward and backward
            cases["compiled"] = compiled
        except Exception as e:  # any compiler failure is reported; the eager row still stands
            _failed(f"torch.compile of {name}", e, skipped, errors)
    try:
        times = interleave(cases, s.rounds, warmup=1, sync=sync)
    except Exception as e:  # a compiled graph that fails on a later call: keep the eager row
        if "compiled" not in cases:
            raise
        _failed(f"torch.compile of {name}, after compiling", e, skipped, errors)
        del cases["compiled"]
        times = interleave(cases, s.rounds, warmup=1, sync=sync)
    eager = statistics.median(times["eager"])
    rows = [
        _row(f"train step {name}", f"{label} eager", 1e3 * eager, "ms/step", s.batch / eager, 1.0, "eager")
    ]
    if "compiled" in times:
        med = statistics.median(times["compiled"])
        rows.append(
            _row(
                f"train step {name}",
                f"{label} compiled (first call {compile_s:.0f} s)",
                1e3 * med,
                "ms/step",
                s.batch / med,
                eager / med,
                "eager",
            )
        )
    return rows


def epoch_row(step_rows: list[dict], s: Settings) -> dict:
    """CIFAR-10 epoch seconds from SimCLR's fastest median step (:func:`epoch_steps` x median step)."""
    best = min((r for r in step_rows if r["item"] == "train step simclr"), key=lambda r: r["median"])
    steps = epoch_steps(CIFAR10_TRAIN, s.batch)
    secs = steps * best["median"] / 1e3
    kind = "compiled" if "compiled" in best["setting"] else "eager"
    setting = f"{steps} steps x simclr's median {kind} step"
    return _row(
        f"CIFAR-10 epoch (ResNet-18 w{s.width:g})", setting, secs, "s/epoch", CIFAR10_TRAIN / secs, "-", "-"
    )


def augment_rows(s: Settings, device: torch.device) -> list[dict]:
    """Batched ``engine.augment`` on the device vs torchvision v2 per-image Compose, interleaved."""
    cpu_g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (s.aug_batch, 3, 32, 32), dtype=torch.uint8, generator=cpu_g).to(device)
    g = torch.Generator(device=device).manual_seed(0)
    compose = _torchvision_compose()
    recipe = RECIPES["simclr"]
    tv = "torchvision v2 Compose (per image)"
    cases = {
        tv: lambda: torch.stack([compose(img) for img in x]),
        "engine.augment (batched)": lambda: augment(x, recipe, g),
    }
    times = interleave(cases, s.rounds, warmup=1, sync=train_bench._sync(device))
    base = statistics.median(times[tv])
    rows = []
    for name, secs in times.items():
        med = statistics.median(secs)
        rows.append(
            _row(
                f"augment {name}",
                f"b{s.aug_batch} simclr recipe",
                1e3 * med,
                "ms/batch",
                s.aug_batch / med,
                base / med,
                "torchvision",
            )
        )
    return rows


def embed_rows(s: Settings, device: torch.device) -> list[dict]:
    """The store's inference path vs a plain eval loop on random images (``engine.benches.embed``)."""
    torch.manual_seed(0)
    model = build_method("simclr", width=s.width, image_size=s.size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (s.embed_n, s.size, s.size, 3), dtype=np.uint8)
    rows, _ = compare_paths(model, images, device, s.embed_batch, s.rounds)
    return [
        _row(
            f"embed {r['path']}",
            f"simclr w{s.width:g}, {s.embed_n} images",
            1e3 * r["median_s"],
            "ms/pass",
            r["items_per_s"],
            r["vs_baseline"],
            "plain loop" if r["path"] != PLAIN else "-",
        )
        for r in rows
    ]


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch._dynamo.reset()
        torch.cuda.empty_cache()


def run(args: argparse.Namespace) -> int:

    device = resolve_device(args.device)
    s = settings_for(device, args.rounds, args.no_compile)
    names = method_names(args.methods)
    t0 = time.perf_counter()
    skipped: list[str] = list(CPU_SKIPS) if device.type != "cuda" else []
    errors: dict[str, str] = {}
    if device.type == "cuda" and args.no_compile:
        skipped.append("skipped: torch.compile rows: --no-compile")
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (s.batch, 3, s.size, s.size), dtype=torch.uint8, generator=gen).to(device)

    def over_budget(item: str) -> bool:
        spent = time.perf_counter() - t0
        if spent > args.budget_s:
            skipped.append(
                f"skipped: {item}: the time budget of {args.budget_s:.0f} s is used up ({spent:.0f} s)"
            )
            return True
        return False

    rows: list[dict] = []
    # The short items first, so that compiling every method cannot crowd them out of the budget.
    if not over_budget("augmentation throughput"):
        rows += augment_rows(s, device)
    if not over_budget("embedding throughput"):
        rows += embed_rows(s, device)
        _free(device)
    for name in names:
        if not over_budget(f"train step {name}"):
            rows += method_rows(name, s, images, device, skipped, errors)
            _free(device)
    if any(r["item"] == "train step simclr" for r in rows):
        rows.append(epoch_row(rows, s))
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, threads={torch.get_num_threads()}"
    )
    total = time.perf_counter() - t0
    print_table(
        rows,
        f"GPU check on {where} ({'full size' if device.type == 'cuda' else 'tiny CPU version'}; "
        f"medians of {s.rounds} interleaved rounds; ratio = baseline median / row median), {total:.0f} s",
    )
    for line in skipped:
        print(line)
    write_results(
        args.out,
        {
            "bench": "gpu",
            "device": where,
            "settings": s.__dict__,
            "seconds": total,
            "rows": rows,
            "skipped": skipped,
            "errors": errors,
        },
    )
    return 0
