"""``python -m engine import SOURCE --format F --arch A --out checkpoints/NAME``: write an EquiLab checkpoint
(safetensors + JSON sidecar) from another library's weights file, verified to load back.

The sidecar records the architecture (``build``), the embedding spaces, the preprocessing (input size, mean, std,
interpolation), the source file's name, sha256 and format, and the key mapping (EquiLab key -> source key).
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path
from typing import Any

import torch

from engine import __version__
from engine.core import io
from engine.core.errors import CheckpointError, ConfigError
from engine.imports.model import IMPORTED, ImportedModel, build_imported
from engine.imports.plan import Plan, Request
from engine.imports.registry import FORMATS
from engine.imports.source import read_source
from engine.train.checkpoint import FORMAT, load_model, save_tensors

SHOW = 10  # keys listed per kind in a mismatch message


def _listing(kind: str, items: list[str]) -> str:
    more = f", ... ({len(items) - SHOW} more)" if len(items) > SHOW else ""
    return f"{len(items)} {kind}: {', '.join(items[:SHOW])}{more}"


def _check(
    plan: Plan, state: dict[str, torch.Tensor], model: ImportedModel, strict: bool, where: str
) -> list[str]:
    """Raise ONE CheckpointError listing missing / wrongly shaped / unexpected keys; returns the unused keys."""
    want = model.state_dict()
    own = {"param_mean", "param_std"}  # computed by EquiLab, not read from the file
    missing = list(plan.missing)
    missing += [src for ours, src in plan.key_map.items() if src not in state]
    missing += [k for k in want if k not in plan.key_map and k not in own]
    wrong = [
        f"{src} {tuple(state[src].shape)} (expected {tuple(want[ours].shape)})"
        for ours, src in plan.key_map.items()
        if src in state and ours in want and tuple(state[src].shape) != tuple(want[ours].shape)
    ]
    used = set(plan.key_map.values())
    unused = [k for k in state if k not in used]
    unexpected = [k for k in unused if not k.startswith(plan.ignored)] if plan.ignored else list(unused)
    problems = []
    if missing:
        problems.append(_listing("missing", missing))
    if wrong:
        problems.append(_listing("wrongly shaped", wrong))
    if unexpected and strict:
        problems.append(_listing("unexpected", unexpected))
    if problems:
        hint = (
            "; pass --strict false to import the backbone without the missing heads"
            if strict and plan.missing and len(missing) == len(plan.missing) and not wrong
            else ""
        )
        raise CheckpointError(f"{where} does not fit this format/architecture: {'; '.join(problems)}{hint}")
    return unused


def _preprocessing_overrides(build: dict[str, Any], input_size: int | None, mean, std) -> None:
    if input_size is not None:
        if not 8 <= input_size <= 1024:
            raise ConfigError(f"--input-size {input_size} out of range [8, 1024]")
        build["image_size"] = input_size
        bb = build["backbone"]
        if bb.get("kind") == "timm" or str(bb.get("arch", "")).startswith("vit"):
            bb.update(image_size=input_size, pass_image_size=True)
    for name, value in (("mean", mean), ("std", std)):
        if value is not None:
            if len(value) != 3 or (name == "std" and min(value) <= 0):
                raise ConfigError(f"--{name} needs three numbers (std > 0), got {value}")
            build[name] = [float(v) for v in value]


def import_checkpoint(
    source: str | Path,
    fmt: str,
    out: str | Path,
    arch: str | None = None,
    strict: bool = True,
    input_size: int | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Import ``source`` (format ``fmt``) as the EquiLab checkpoint ``out`` (a stem); returns the sidecar path."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose from {sorted(FORMATS)}")
    src = Path(source)
    stem = Path(out)
    stem = stem.with_suffix("") if stem.suffix in (".json", ".safetensors") else stem
    if stem.with_suffix(".json").exists() and not overwrite:
        raise ConfigError(f"{stem}.json already exists; pass --overwrite or choose another --out")
    content = read_source(src)
    plan, state = FORMATS[fmt].plan(content, Request(arch, strict))
    _preprocessing_overrides(plan.build, input_size, mean, std)
    model = build_imported(plan.build)
    unused = _check(plan, state, model, strict, str(src))
    tensors = {ours: state[s] for ours, s in plan.key_map.items() if ours in model.state_dict()}
    model.load_state_dict({**model.state_dict(), **tensors}, strict=True)
    weights = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    build = plan.build
    info = {
        "format": FORMAT,
        "method": IMPORTED,
        "build": build,
        "backbone": f"{build['backbone']['kind']}:{build['backbone']['arch']}",
        "width": 1.0,
        "image_size": build["image_size"],
        "spaces": list(model.spaces),
        "preprocessing": {k: build[k] for k in ("image_size", "mean", "std", "interpolation")},
        "config": {},
        "epoch": 0,
        "step": 0,
        "metrics": {},
        "versions": {"engine": __version__, "torch": torch.__version__},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "state": None,
        "imported": {
            "format": fmt,
            "source": src.name,
            "source_sha256": io.sha256_file(src),
            "strict": strict,
            "key_map": dict(sorted(plan.key_map.items())),
            "unused_keys": len(unused),
            "unused_prefixes": sorted({k.split(".")[0] for k in unused}),
            "notes": plan.notes,
        },
    }
    if "param_stats" in build:
        info["param_stats"] = build["param_stats"]
    save_tensors(stem, weights, info)
    load_model(stem)  # the written checkpoint must load back through the one loader
    return stem.with_suffix(".json")


def _bool(text: str) -> bool:
    v = text.strip().lower()
    if v not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return v in ("true", "1", "yes")


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def cmd_import(args: argparse.Namespace) -> int:
    side = import_checkpoint(
        args.source,
        args.format,
        args.out,
        args.arch,
        args.strict,
        args.input_size,
        args.mean,
        args.std,
        args.overwrite,
    )
    print(side.with_suffix(".safetensors"))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    formats = "; ".join(f"{k}: {m.DESCRIPTION}" for k, m in FORMATS.items())
    p = sub.add_parser(
        "import",
        help="import another library's checkpoint (torchvision, timm, solo-learn, lightly, E-SSL, EquiMod)",
        description="Write an EquiLab checkpoint (.safetensors + .json) from a foreign weights file. Files are "
        "read with safetensors or torch.load(weights_only=True) only; anything needing full unpickling is "
        f"refused. Formats: {formats}.",
    )
    p.add_argument(
        "source", help="the weights file (.safetensors, .pt/.pth/.ckpt readable without unpickling)"
    )
    p.add_argument("--format", required=True, choices=sorted(FORMATS))
    p.add_argument("--arch", default=None, help="architecture (torchvision name, timm name, or timm:<name>)")
    p.add_argument("--out", required=True, help="checkpoint stem, e.g. checkpoints/my_resnet")
    p.add_argument(
        "--strict", type=_bool, default=True, help="false: import a backbone whose heads are missing"
    )
    p.add_argument(
        "--input-size", type=int, default=None, help="input side in pixels (default: the format's)"
    )
    p.add_argument("--mean", type=_floats, default=None, help="normalisation mean, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", type=_floats, default=None, help="normalisation std, e.g. 0.229,0.224,0.225")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_import)
