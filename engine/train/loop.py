"""The trainer: ``fit(cfg) -> run_dir`` and the ``python -m engine train`` command.

Data order and augmentation randomness depend only on ``(seed, epoch, step, rank)``: each epoch's permutation
comes from ``SeedSequence([seed, epoch])`` and each step's augmentations from a fresh ``torch.Generator`` seeded
with ``(seed, step, rank)``. Resuming from an epoch-end checkpoint therefore replays exactly the same batches and
views, and on CPU ends with bit-identical weights. Under torchrun (``WORLD_SIZE > 1``) every rank takes its slice
of each global batch and the model is wrapped in DistributedDataParallel (NCCL on GPU, gloo on CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from engine.core import distributed, io
from engine.core.device import resolve_device
from engine.core.errors import ConfigError, EquiLabError
from engine.methods import build_method
from engine.methods.losses import local
from engine.train import checkpoint as ckpt
from engine.train.config import (
    Config,
    flatten_yaml,
    load_config,
    method_takes,
    parse_overrides,
    peak_lr,
    to_dict,
    to_yaml,
)
from engine.train.data import RunData, autocast, knn_monitor, load_run_data, to_device
from engine.train.metrics import METRICS_FILE, at_chance, epoch_key, read_metrics
from engine.train.online import OnlineLinear
from engine.train.optim import build_optimizer, lr_at, set_lr

log = logging.getLogger(__name__)


class NonFiniteLossError(EquiLabError):
    """The loss became NaN/inf: the run stops and keeps its last good checkpoint."""


@dataclass(frozen=True)
class StepEvent:
    """What ``on_step`` callbacks see after each optimisation step (progress bars, tests)."""

    epoch: int
    step: int  # global step count after this step
    steps_per_epoch: int
    loss: float
    lr: float
    img_s: float
    model: nn.Module


OnStep = Callable[[StepEvent], None]


def init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``; joins the torchrun process group when ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the ``n`` training items in ``epoch`` (a function of seed and epoch only)."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(n)


def rank_batches(perm: np.ndarray, batch_size: int, rank: int, world: int) -> list[np.ndarray]:
    """This rank's slice of every full global batch of ``perm`` (the last partial batch is dropped)."""
    per_rank = batch_size // world
    full = len(perm) // batch_size
    return [
        perm[i * batch_size + rank * per_rank : i * batch_size + (rank + 1) * per_rank] for i in range(full)
    ]


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """Augmentation randomness of one step on one rank."""
    s = np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(s) & ((1 << 63) - 1))


def train_one_epoch(
    fwd: nn.Module,
    model: nn.Module,
    images: np.ndarray,
    batches: list[np.ndarray],
    optimizer: torch.optim.Optimizer,
    lr_of: Callable[[int], float],
    *,
    epoch: int,
    start_step: int,
    seed: int,
    rank: int,
    device: torch.device,
    cfg: Config,
    log_record: Callable[[dict], None],
    on_step: OnStep | None = None,
    labels: np.ndarray | None = None,
    online: OnlineLinear | None = None,
) -> dict[str, float]:
    """One pass over ``batches``; ``fwd`` is the (possibly DDP/compiled) module, ``model`` the bare method.

    ``labels`` (the class of each row of ``images``) reach a method whose ``uses_labels`` is true as
    ``views["y"]`` and feed the ``online`` linear classifier (detached features, its own optimiser)."""
    uses_labels = bool(getattr(model, "uses_labels", False))
    if uses_labels and labels is None:
        raise ConfigError(f"method {getattr(model, 'name', '?')!r} needs class labels; this dataset has none")
    fwd.train()
    step, total, window_t, window_n = start_step, 0.0, time.perf_counter(), 0
    part_sums: dict[str, Tensor] = {}  # every scalar part summed on its device (no extra sync per step)
    channels_last = device.type == "cuda" and cfg.train.channels_last
    for idx in batches:
        lr = lr_of(step)
        set_lr(optimizer, lr)
        rows = np.sort(idx)  # sorted reads are kinder to a memory map
        x = to_device(images[rows], device)
        y = None if labels is None else torch.as_tensor(labels[rows], dtype=torch.long, device=device)
        views = model.make_views(x, step_generator(seed, step, rank, device))
        if uses_labels:
            views["y"] = y
        if channels_last:
            views = {
                k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                for k, v in views.items()
            }
        with autocast(device, cfg.train.amp):
            out = fwd(views)
        loss = float(out["loss"].detach())
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss {loss} at step {step} (epoch {epoch + 1}); stopped, the last good checkpoint is "
                "kept. Lower optim.lr or check the data, then resume with --resume."
            )
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        if online is not None and y is not None:
            online.step(model, x, y, cfg.train.amp)
        for k, v in out.items():
            if k != "loss" and v.numel() == 1:
                part_sums[k] = part_sums.get(k, 0.0) + v.detach().float()
        step, total, window_n = step + 1, total + loss, window_n + len(idx)
        img_s = window_n / max(time.perf_counter() - window_t, 1e-9)
        if step % cfg.train.log_every == 0:
            parts = {k: float(v.detach()) for k, v in out.items() if k != "loss" and v.numel() == 1}
            log_record({"step": step, "epoch": epoch + 1, "loss": loss, **parts, "lr": lr, "img_s": img_s})
            window_t, window_n = time.perf_counter(), 0
        if on_step is not None:
            on_step(StepEvent(epoch + 1, step, len(batches), loss, lr, img_s, model))
    n = max(1, step - start_step)
    means = {epoch_key(k): float(v) / n for k, v in part_sums.items()}
    return {"loss": total / max(1, len(batches)), "steps": float(step - start_step), **means}


def sync_batchnorm(model: nn.Module, world: int) -> nn.Module:
    """BatchNorm layers -> SyncBatchNorm (in place, same parameters and buffers) when more than one rank trains and
    the method's config asks for it (``sync_bn``: EquiMod's reference code syncs BN statistics across GPUs)."""
    if world > 1 and getattr(getattr(model, "config", None), "sync_bn", False):
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _distributed_wrap(model: nn.Module, cfg: Config, device: torch.device, world: int) -> nn.Module:
    fwd: nn.Module = model
    if world > 1:
        model = sync_batchnorm(model, world)
        fwd = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(fwd) if cfg.train.compile else fwd


def _append(path: Path, record: dict) -> None:
    # metrics.jsonl is append-only: one line per write; readers skip a half-written last line
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop records written after the checkpoint (the killed part of the run will be replayed)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("step", 0) <= step:
            keep.append(line)
    io.atomic_write_text(path, "".join(x + "\n" for x in keep))


def method_options(cfg: Config, data: RunData) -> dict:
    """``model.options`` plus the dataset's class count for a method that takes ``num_classes`` (unless given)."""
    options = dict(cfg.model.options)
    if method_takes(cfg.model.method, "num_classes") and "num_classes" not in options:
        options["num_classes"] = data.num_classes
    return options


def warn_at_chance(run: Path, metrics_path: Path, warned: set[tuple[str, int]]) -> None:
    """Log once per stretch a pretext head whose loss is no better than ln k (:func:`engine.train.metrics.at_chance`);
    called after the epoch's checkpoint is saved, and a metrics file it cannot read only skips the check."""
    try:
        df = read_metrics(metrics_path)
    except OSError as e:
        log.warning("%s: the head check could not read %s (%s)", run, metrics_path, e)
        return
    for f in at_chance(df):
        if (f.key, f.since) not in warned:
            warned.add((f.key, f.since))
            log.warning("%s: %s", run, f.sentence())


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.train.out or f"runs/{cfg.model.method}-{cfg.data.dataset}")


def fit(cfg: Config, resume: bool = False, on_step: OnStep | None = None) -> Path:
    """Train ``cfg`` (resuming from ``<out>/checkpoints/last`` when ``resume``) and return the run directory."""

    device = resolve_device(cfg.train.device)
    rank, world, device = init_distributed(device)
    if cfg.optim.batch_size % world:
        raise ConfigError(f"optim.batch_size={cfg.optim.batch_size} must be divisible by the {world} ranks")
    run, is_main = run_dir_of(cfg), rank == 0
    last = run / "checkpoints" / "last"
    if last.with_suffix(".json").exists() and not resume:
        raise ConfigError(f"{run} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not last.with_suffix(".json").exists() and any(last.parent.glob("*")):
        raise ConfigError(
            f"{run}: nothing to resume from: {last.parent} holds no EquiLab checkpoint (no last.json sidecar; "
            "a .pt/.pth file is never unpickled); start a new run with another --out, or import the weights "
            "with `python -m engine import`"
        )
    data = load_run_data(cfg)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(cfg.train.seed)
        model = build_method(
            cfg.model.method,
            cfg.model.backbone,
            cfg.model.width,
            cfg.model.image_size or data.image_side,
            method_options(cfg, data),
            gather=distributed.gather_rows if world > 1 else local,
        )
    model = model.to(device)
    if device.type == "cuda" and cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    peak = peak_lr(cfg)
    optimizer = build_optimizer(cfg.optim.optimizer, model, peak, cfg.optim.momentum, cfg.optim.weight_decay)
    steps_per_epoch = len(data.train_images) // cfg.optim.batch_size
    if steps_per_epoch == 0 and model.trainable:
        raise ConfigError(
            f"optim.batch_size={cfg.optim.batch_size} exceeds the {len(data.train_images)} training items; "
            "lower it or raise data.train_subset"
        )
    total, warm = cfg.optim.epochs * steps_per_epoch, round(cfg.optim.warmup_epochs * steps_per_epoch)
    start_epoch, step, metrics_path = 0, 0, run / METRICS_FILE
    online = None
    if cfg.train.online_linear and is_main and data.train_labels is not None:
        online = OnlineLinear(model.backbone.feat_dim, data.num_classes, device, cfg.train.seed)
    if resume and last.with_suffix(".json").exists():
        state, info = ckpt.load_state(last)
        ckpt.check_shapes(model, state, last.with_suffix(".safetensors"))
        model.load_state_dict(state)
        if model.trainable:
            saved = ckpt.load_train_state(last, optimizer)
            if online is not None and not online.load(saved):
                log.warning(
                    "%s predates saving the online linear classifier: it restarts from its seeded start, so this "
                    "run's online_linear_* figures differ from an uninterrupted run's",
                    last,
                )
        start_epoch, step = info["epoch"], info["step"]
        if is_main:
            _truncate_metrics(metrics_path, step)
        log.info("resuming %s from epoch %d, step %d", run, start_epoch, step)
    if is_main:
        io.atomic_write_text(run / "config.yaml", to_yaml(cfg))
    fwd = _distributed_wrap(model, cfg, device, world) if model.trainable else model
    record = (lambda r: _append(metrics_path, r)) if is_main else (lambda r: None)
    epochs = cfg.optim.epochs if model.trainable else 0

    warned: set[tuple[str, int]] = set()

    def save(epoch: int, metrics: dict) -> None:
        if not is_main:
            return
        kw = dict(config=to_dict(cfg), epoch=epoch, step=step, metrics=metrics)
        extra = {"rng_torch": torch.get_rng_state(), **(online.state() if online is not None else {})}
        ckpt.save_checkpoint(last, model, optimizer=optimizer, extra_state=extra, **kw)
        if cfg.train.checkpoint_every and (epoch % cfg.train.checkpoint_every == 0 or epoch == epochs):
            ckpt.save_checkpoint(run / "checkpoints" / f"epoch_{epoch:04d}", model, **kw)

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        batches = rank_batches(
            epoch_permutation(len(data.train_images), cfg.train.seed, epoch),
            cfg.optim.batch_size,
            rank,
            world,
        )
        stats = train_one_epoch(
            fwd,
            model,
            data.train_images,
            batches,
            optimizer,
            lambda s: lr_at(s, peak, warm, total, cfg.optim.final_lr_ratio),
            epoch=epoch,
            start_step=step,
            seed=cfg.train.seed,
            rank=rank,
            device=device,
            cfg=cfg,
            log_record=record,
            on_step=on_step if is_main else None,
            labels=data.train_labels,
            online=online,
        )
        step += int(stats["steps"])
        rec = {
            "epoch": epoch + 1,
            "step": step,
            "loss_epoch": stats["loss"],
            **{k: v for k, v in stats.items() if k not in ("loss", "steps")},
            "epoch_time_s": time.perf_counter() - t0,
        }
        k = cfg.train.knn_every
        if is_main and k and ((epoch + 1) % k == 0 or epoch + 1 == epochs):
            rec["knn_acc"] = knn_monitor(model, data, cfg, device)
        if online is not None:
            rec.update(online.end_epoch(model, data.query_images, data.query_labels, device))
        record(rec)
        log.info("epoch %d/%d %s", epoch + 1, epochs, {k: round(v, 4) for k, v in rec.items()})
        save(epoch + 1, rec)
        if is_main:
            warn_at_chance(run, metrics_path, warned)
        if world > 1:
            dist.barrier()
    if epochs == 0 and is_main:  # untrainable reference (none): save the seeded random init
        rec = {"epoch": 0, "step": 0}
        if cfg.train.knn_every:
            rec["knn_acc"] = knn_monitor(model, data, cfg, device)
        record(rec)
        save(0, rec)
    return run


# ----------------------------------------------------------------------------------------------- CLI
HELP_OVERRIDES = """KEY=VALUE overrides (or --KEY=VALUE flags), applied after the defaults and --config.
Keys are dotted section.field; a bare field name works when unique (epochs=10). Values parse as YAML.
  data.  dataset root options.<opt> train_subset knn_bank knn_queries
  model. method backbone width image_size options.<method option>  (e.g. model.options.temperature=0.2)
  optim. optimizer(sgd|lars) lr(base; peak = lr*batch/256*method lr_scale) momentum weight_decay
         warmup_epochs epochs batch_size final_lr_ratio
  train. seed device(auto|cpu|cuda) amp channels_last compile checkpoint_every knn_every knn_k knn_t
         log_every out online_linear (true: a linear classifier on detached backbone features, logged
         each epoch as online_linear_acc / online_linear_train_acc; off by default, ~+15% step time on CPU)
Defaults: shapes -> width 0.125, 5000-item subset, batch 128, 20 epochs, 2 warm-up epochs;
cifar10 -> paper settings (width 1, batch 512, 800 epochs, SGD 0.03*bs/256, momentum 0.9, wd 5e-4,
10 warm-up epochs, cosine). Multi-GPU: torchrun --nproc_per_node N -m engine train ...
The resolved config is written to <out>/config.yaml."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="pretrain an SSL method; writes config.yaml, metrics.jsonl and checkpoints to the run dir",
        description="Pretrain a method on a dataset. Prints the run directory on success.",
        epilog=HELP_OVERRIDES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--method", help="simclr | essl | equimod | clever | rotation | pretext | none (model.method)"
    )
    p.add_argument("--dataset", help="shapes | cifar10 | cifar100 | stl10 | imagefolder (data.dataset)")
    p.add_argument("--data-root", help="folder of a file-backed dataset (data.root; else $EQUILAB_DATA_ROOT)")
    p.add_argument("--out", help="run directory (train.out; default runs/<method>-<dataset>)")
    p.add_argument("--config", help="YAML file of settings (nested sections or dotted keys)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (its config.yaml is the base config)",
    )
    p.add_argument(
        "--ship",
        metavar="DIR/NAME",
        help="after training, also write DIR/NAME.safetensors + DIR/NAME.json (weights only, no optimizer state)",
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (see below)")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:

    flags = {"model.method": args.method, "data.dataset": args.dataset, "data.root": args.data_root}
    flags = {k: v for k, v in flags.items() if v is not None}
    if args.out:
        flags["train.out"] = args.out
    base: dict = {}
    out = Path(args.out) if args.out else None
    if args.resume and out is not None and (out / "config.yaml").is_file():
        base = flatten_yaml(out / "config.yaml")
    if args.config:
        base.update(flatten_yaml(args.config))
    cfg = load_config(None, {**base, **flags, **parse_overrides(args.overrides)})
    run = fit(cfg, resume=args.resume, on_step=None if args.no_progress else _progress_bar())
    if args.ship:
        shipped = ckpt.export(run / "checkpoints" / "last", args.ship)
        log.info("shipped %s", shipped)
    print(run)
    return 0


def _progress_bar() -> OnStep:
    """A tqdm bar per epoch showing loss, lr and img/s (CLI only; the engine itself only logs)."""

    bars: dict[int, tqdm] = {}

    def update(ev: StepEvent) -> None:
        if ev.epoch not in bars:
            for b in bars.values():
                b.close()
            bars.clear()
            bars[ev.epoch] = tqdm(
                total=ev.steps_per_epoch, desc=f"epoch {ev.epoch}", leave=False, unit="step"
            )
        bar = bars[ev.epoch]
        bar.update(1)
        bar.set_postfix(loss=f"{ev.loss:.4f}", lr=f"{ev.lr:.4g}", img_s=f"{ev.img_s:.0f}", refresh=False)

    return update
