"""``python -m engine data info|preview``: inspect a dataset and save a grid of samples."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.core import io
from engine.core.errors import ConfigError, DataError
from engine.data import DATASETS, SPLITS, ImageDataset, dataset_options, load_dataset
from engine.data.shapes import FACTOR_RANGES

TILE_SCALE = 2  # 32 px thumbnails are too small to read at 1:1


def _parse_options(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings to dataset options; integers and floats are converted."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r} must look like KEY=VALUE, e.g. --option size=1000.")
        value: object = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        options[key.replace("-", "_")] = value
    return options


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default="shapes",
        choices=sorted(DATASETS),
        help="dataset name (default: shapes, generated)",
    )
    p.add_argument(
        "--data-root", default=None, metavar="DIR", help="data folder (default: $EQUILAB_DATA_ROOT)"
    )
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, repeatable: size=N and seed=S for shapes, image_size=PX for imagefolder",
    )


def _describe(ds: ImageDataset) -> list[str]:
    h, w = ds.image_size
    lines = [f"{ds.name}/{ds.split}: {len(ds):,} images of {h}x{w}, {len(ds.classes)} classes"]
    counts = ds.class_counts()
    lines += [f"  {name:<14} {counts[name]:>7,}" for name in ds.classes]
    if ds.name.startswith("shapes"):
        lines.append("  factors (sampled independently, uniformly):")
        lines += [
            f"    {k:<11} range {lo:g} .. {hi:g}, observed {ds.meta[k].min():.3f} .. {ds.meta[k].max():.3f}"
            for k, (lo, hi) in FACTOR_RANGES.items()
        ]
        sym = {c: int(ds.meta["symmetry"][ds.labels == i][0]) for i, c in enumerate(ds.classes) if counts[c]}
        lines.append(f"    symmetry    {sym} (0 = continuous)")
    elif ds.meta:
        lines.append(f"  meta columns: {sorted(ds.meta)}")
    return lines


def cmd_info(args: argparse.Namespace) -> int:
    options = _parse_options(args.option)
    splits = [args.split] if args.split else list(SPLITS[args.dataset][:2])
    print(f"dataset {args.dataset}; options {options or 'default'} (accepts {dataset_options(args.dataset)})")
    for i, split in enumerate(splits):
        try:
            ds = load_dataset(args.dataset, split, args.data_root, **options)
        except DataError as e:
            if args.split or i == 0:  # the split asked for, or none at all: a real error
                raise
            print(f"{args.dataset}/{split}: not available ({e})")
            continue
        print("\n".join(_describe(ds)))
    return 0


def grid_image(images: np.ndarray, labels: list[str], cols: int) -> np.ndarray:
    """Tile uint8 ``[n, h, w, 3]`` into one image, each tile upscaled and captioned with its label."""

    n, h, w, _ = images.shape
    th, tw, caption = h * TILE_SCALE, w * TILE_SCALE, 12
    rows = -(-n // cols)
    canvas = Image.new("RGB", (cols * tw, rows * (th + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (img, text) in enumerate(zip(images, labels)):
        x, y = (i % cols) * tw, (i // cols) * (th + caption)
        canvas.paste(Image.fromarray(np.asarray(img)).resize((tw, th), Image.Resampling.NEAREST), (x, y))
        draw.text((x + 1, y + th), text[: max(3, tw // 6)], fill=(0, 0, 0))
    return np.asarray(canvas)


def cmd_preview(args: argparse.Namespace) -> int:

    if args.n < 1:
        raise ConfigError(f"--n {args.n} must be at least 1.")
    ds = load_dataset(args.dataset, args.split, args.data_root, **_parse_options(args.option))
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(ds), size=min(args.n, len(ds)), replace=False))
    names = [ds.classes[k] if k >= 0 else "?" for k in ds.labels[idx]]
    cols = args.cols or int(np.ceil(np.sqrt(len(idx))))
    grid = grid_image(np.asarray(ds.images[idx]), names, cols)
    out = Path(args.out)
    io.atomic_write(out, lambda p: Image.fromarray(grid).save(p, format="PNG"))
    print(f"wrote {out} ({len(idx)} images of {ds.name}/{ds.split})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``data info`` and ``data preview``."""
    data = sub.add_parser(
        "data", help="inspect datasets", description="Inspect datasets and preview samples."
    )
    cmds = data.add_subparsers(dest="data_command", metavar="<data command>", required=True)

    info = cmds.add_parser(
        "info", help="counts, classes, image size, factor ranges", description="Summarise a dataset split."
    )
    _common(info)
    info.add_argument("--split", default=None, help="one split only (default: train and test)")
    info.set_defaults(func=cmd_info)

    prev = cmds.add_parser(
        "preview", help="save a PNG grid of samples", description="Save a PNG grid of random samples."
    )
    _common(prev)
    prev.add_argument("--split", default="train", help="split to sample (default: train)")
    prev.add_argument("--out", required=True, metavar="PNG", help="output PNG path")
    prev.add_argument("--n", type=int, default=64, help="number of samples (default: 64)")
    prev.add_argument(
        "--seed", type=int, default=0, help="seed choosing which samples are shown (default: 0)"
    )
    prev.add_argument("--cols", type=int, default=0, help="grid columns (default: about sqrt(n))")
    prev.set_defaults(func=cmd_preview)
