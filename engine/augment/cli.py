"""``python -m engine augment preview``: a PNG strip of one image and its augmented views, plus their parameters."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from engine import augment as A
from engine.core import io
from engine.core.errors import ConfigError, DataError
from engine.data import load_dataset

PAD = 2  # px of white between tiles


def _load_image(args: argparse.Namespace) -> np.ndarray:
    """uint8 [H, W, 3] from ``--image`` (PIL, RGB) or item ``--index`` of ``--dataset``."""
    if args.image:
        try:
            with Image.open(args.image) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"cannot read image {args.image}: {e}. Pass a PNG or JPEG file.") from e

    ds = load_dataset(args.dataset, args.split, args.data_root)
    if not 0 <= args.index < len(ds):
        raise ConfigError(f"--index {args.index} is outside {args.dataset}/{args.split} (0..{len(ds) - 1})")
    return np.asarray(ds.images[args.index])


def strip(tiles: torch.Tensor, zoom: int) -> np.ndarray:
    """float [N, 3, S, S] in [0, 1] -> uint8 [S*zoom, N*(S*zoom+PAD)-PAD, 3], nearest-neighbour zoom."""
    t = tiles.repeat_interleave(zoom, dim=2).repeat_interleave(zoom, dim=3)
    t = torch.nn.functional.pad(t, (0, PAD), value=1.0)
    img = torch.cat(list(t), dim=2)[..., :-PAD]  # [3, H, W]
    return (img.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def cmd_preview(args: argparse.Namespace) -> int:

    if args.n < 1 or args.zoom < 1:
        raise ConfigError(f"--n {args.n} and --zoom {args.zoom} must be >= 1")
    img = _load_image(args)
    hw = (int(img.shape[0]), int(img.shape[1]))
    base = A.get_recipe(args.recipe)
    recipe = A.for_image(base, hw) if args.size == 0 else dataclasses.replace(base, size=args.size)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].expand(args.n, -1, -1, -1)
    views, params = A.augment(x, recipe, torch.Generator().manual_seed(args.seed))
    original = A.apply(x[:1], A.identity_params(1, hw, recipe.size))
    grid = strip(torch.cat([original, views]), args.zoom)
    io.atomic_write(args.out, lambda p: Image.fromarray(grid).save(p, format="PNG"))
    vec = A.equimod_vector(params, hw)
    print("view  " + " ".join(f"{n:>10}" for n in A.EQUIMOD_NAMES))
    for k, row in enumerate(vec.tolist()):
        print(f"{k:<5} " + " ".join(f"{v:>10.4g}" for v in row))
    print(f"wrote {args.out} (original + {args.n} views, {recipe.size} px, recipe {args.recipe})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("augment", help="inspect the augmentation pipeline")
    cmds = p.add_subparsers(dest="augment_command", metavar="<subcommand>", required=True)
    prev = cmds.add_parser(
        "preview",
        help="write a PNG of one image and N augmented views; print each view's EquiMod parameter vector",
        description="Augment one image N times with a recipe (seeded) and save original + views side by side.",
    )
    prev.add_argument("--dataset", default="shapes", help="dataset name for engine.data (default: shapes)")
    prev.add_argument("--split", default="train", help="dataset split (default: train)")
    prev.add_argument("--data-root", default=None, help="data folder for file-backed datasets")
    prev.add_argument("--index", type=int, default=0, help="item index in the split (default: 0)")
    prev.add_argument("--image", default=None, metavar="PATH", help="augment this image file instead")
    prev.add_argument("--n", type=int, default=8, help="number of views (default: 8)")
    prev.add_argument(
        "--recipe", default="simclr", help="recipe name: simclr, byol, byol_view2, essl_rotation"
    )
    prev.add_argument(
        "--size", type=int, default=0, help="output side (default: recipe size scaled to image)"
    )
    prev.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator (default: 0)")
    prev.add_argument("--zoom", type=int, default=4, help="nearest-neighbour zoom of the tiles (default: 4)")
    prev.add_argument("--out", required=True, metavar="PNG", help="output PNG path")
    prev.set_defaults(func=cmd_preview)
