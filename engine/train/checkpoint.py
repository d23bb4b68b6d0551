"""Self-describing, pickle-free checkpoints: ``<stem>.safetensors`` (weights) + ``<stem>.json`` (sidecar).

The sidecar holds the method and its build arguments, the full resolved config, the data spec of the train split
(``data``: :class:`engine.data.DataSpec` as a dict), parameter-encoding statistics where the method has them, epoch/step/metrics, versions and the sha256 of the weights. Resume state (optimizer
tensors, RNG state) goes to ``<stem>.state`` (safetensors format; named so model pickers that look for
``*.safetensors`` never offer it) with its scalars and sha256 in the sidecar. Files are written state, weights,
sidecar, each atomically, so a sidecar never points to a missing or partial file.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from engine import __version__
from engine.core import io
from engine.core.errors import CheckpointError, ConfigError, EquiLabError
from engine.data import DataSpec
from engine.imports.model import IMPORTED, build_imported
from engine.methods import METHODS, build_method

FORMAT = "equilab-checkpoint/1"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ opcode; torch.save's zip container


def stem_of(path: str | Path) -> Path:
    """``run_dir`` -> ``run_dir/checkpoints/last``; ``x.json`` / ``x.safetensors`` / ``x`` -> ``x`` (no suffix)."""
    p = Path(path)
    if p.is_dir():
        for cand in (p / "checkpoints" / "last", p / "last", p / "model"):
            if cand.with_suffix(".json").is_file():
                return cand
        raise CheckpointError(
            f"{p} holds no checkpoint (looked for checkpoints/last.json); train or pass a file"
        )
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{p} is a pickle-based file ({p.suffix}); EquiLab never unpickles checkpoints because that can run "
            "arbitrary code. Use a .safetensors + .json checkpoint written by `python -m engine train`."
        )
    return p.with_suffix("") if p.suffix in (".json", ".safetensors", ".state") else p


def _refuse_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == PICKLE_MAGIC[0] or head == PICKLE_MAGIC[1]:
        raise CheckpointError(
            f"{path} looks like a pickle/torch.save file, which is refused (never unpickled)."
        )


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage; contiguous CPU copies are what it writes
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _device_type(model: nn.Module) -> str:
    """Where the model's weights are ("cpu", "cuda"; "cpu" for a model without parameters)."""
    return next((p.device.type for p in model.parameters()), "cpu")


def _optimizer_split(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt/{idx}/{name}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars[f"{idx}/{name}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    stem: str | Path,
    model: nn.Module,
    *,
    config: dict[str, Any],
    epoch: int,
    step: int,
    metrics: dict[str, float] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``stem.safetensors`` + ``stem.json`` (+ ``stem.state`` when ``optimizer`` is given); returns the json.

    ``model`` must come from ``engine.methods.build_method`` (it carries ``build_kwargs``).
    """
    stem = Path(stem)
    build = getattr(model, "build_kwargs", None)
    if build is None:
        raise CheckpointError("model has no build_kwargs; build it with engine.methods.build_method")
    info: dict[str, Any] = {
        "format": FORMAT,
        "method": build["name"],
        "build": build,
        "backbone": build["backbone"],
        "width": build["width"],
        "image_size": build["image_size"],
        "config": config,
        "epoch": int(epoch),
        "step": int(step),
        "metrics": dict(metrics or {}),
        "versions": {"engine": __version__, "torch": torch.__version__},
        # what a bit-identical rerun also needs: a CPU run's float sums depend on torch's intra-op thread count
        "host": {"device": _device_type(model), "torch_threads": torch.get_num_threads()},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "state": None,
    }
    spec = config_spec(config)
    if spec is not None:
        info["data"] = spec.to_dict()
    if hasattr(model, "param_mean"):
        info["param_stats"] = {"mean": model.param_mean.tolist(), "std": model.param_std.tolist()}
    # Stage all three files, then rename them together (state, weights, sidecar last): a disk-full or
    # permission failure anywhere leaves the previous checkpoint byte-identical, never a new .state beside the
    # old sidecar (whose recorded sha256 it would no longer match).
    with io.atomic_files() as stage:
        if optimizer is not None:
            tensors, scalars = _optimizer_split(optimizer)
            tensors.update(
                {f"extra/{k}": v.detach().cpu().contiguous().clone() for k, v in (extra_state or {}).items()}
            )
            state_path = stem.with_suffix(".state")
            tmp = stage(state_path, lambda p: save_file(tensors, str(p)))
            info["state"] = {"file": state_path.name, "sha256": io.sha256_file(tmp), "optimizer": scalars}
        _stage_weights_and_sidecar(stage, stem, _tensors(model), info)
    return stem.with_suffix(".json")


def _stage_weights_and_sidecar(stage: io.Stage, stem: Path, tensors: dict, info: dict[str, Any]) -> None:
    weights = stem.with_suffix(".safetensors")
    tmp = stage(weights, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
    info["weights"] = {"file": weights.name, "sha256": io.sha256_file(tmp), "bytes": tmp.stat().st_size}
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    stage(stem.with_suffix(".json"), lambda p: p.write_text(text))


def save_tensors(stem: str | Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> Path:
    """Write ``tensors`` + ``info`` (completed with the weights entry) as a checkpoint (imported models)."""
    stem = Path(stem)
    with io.atomic_files() as stage:
        _stage_weights_and_sidecar(stage, stem, tensors, dict(info))
    return stem.with_suffix(".json")


def read_info(path: str | Path) -> dict[str, Any]:
    """The validated sidecar of a checkpoint (path: run dir, ``.json``, ``.safetensors`` or stem)."""
    stem = stem_of(path)
    side = stem.with_suffix(".json")
    if not side.is_file():
        raise CheckpointError(
            f"checkpoint sidecar {side} not found; pass a .json/.safetensors pair or a run dir"
        )
    try:
        info = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint sidecar {side}: {e}") from e
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{side} is not an EquiLab checkpoint sidecar (format {FORMAT!r} expected)")

    if info.get("method") not in METHODS and info.get("method") != IMPORTED:
        raise CheckpointError(f"{side}: unknown method {info.get('method')!r}; known: {sorted(METHODS)}")
    return info


def config_spec(config: Any) -> DataSpec | None:
    """The train split's data spec of a resolved config dict (its ``data`` section), or None without one."""
    d = config.get("data") if isinstance(config, dict) else None
    if not isinstance(d, dict) or not isinstance(d.get("dataset"), str):
        return None
    return DataSpec(d["dataset"], "train", d.get("root"), d.get("options") or {})


def data_spec(info: dict[str, Any]) -> DataSpec | None:
    """The data spec a checkpoint was trained on (split ``train``), or None when its sidecar records none.

    Reads the sidecar's ``data`` entry; sidecars written before it existed fall back to ``config.data``.
    """
    try:
        return DataSpec.from_dict(info["data"]) if "data" in info else config_spec(info.get("config"))
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"checkpoint sidecar: malformed data spec ({e})") from e


def _load_verified(path: Path, sha: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (its sidecar refers to it)")
    _refuse_pickle(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or damaged?): {e}"
        ) from e
    if io.sha256_file(path) != sha:
        raise CheckpointError(f"{path}: sha256 does not match its sidecar; the file was changed or damaged")
    return tensors


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verified weights ``(state_dict, info)``."""
    info = read_info(path)
    stem = stem_of(path)
    file, sha = _file_entry(info, "weights", stem)
    return _load_verified(stem.with_name(file), sha), info


def _file_entry(info: dict[str, Any], key: str, stem: Path) -> tuple[str, str]:
    """``(file name, sha256)`` of the sidecar's ``key`` entry, or CheckpointError if it is malformed."""
    entry = info.get(key)
    file = entry.get("file") if isinstance(entry, dict) else None
    sha = entry.get("sha256") if isinstance(entry, dict) else None
    if not (
        isinstance(file, str) and file not in ("", ".", "..") and "/" not in file and isinstance(sha, str)
    ):
        raise CheckpointError(
            f"{stem}.json: its {key!r} entry {entry!r} is malformed (need a file name and its sha256); "
            "the sidecar was edited or damaged: use the .json written by `python -m engine train`"
        )
    return file, sha


def check_shapes(model: nn.Module, state: dict[str, torch.Tensor], where: Path | str) -> None:
    """CheckpointError naming the first missing, unexpected or differently-shaped tensor."""
    want = model.state_dict()
    for k, v in want.items():
        if k not in state:
            raise CheckpointError(f"{where}: tensor {k!r} {tuple(v.shape)} is missing from the checkpoint")
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{where}: tensor {k!r} has shape {tuple(state[k].shape)} in the checkpoint but the architecture "
                f"expects {tuple(v.shape)}"
            )
    extra = sorted(set(state) - set(want))
    if extra:
        raise CheckpointError(f"{where}: unexpected tensors {extra[:5]} not in the architecture")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the method from the sidecar, load verified weights, return ``(model.eval() on device, info)``."""

    state, info = load_state(path)
    try:
        build = info["build"]
        model = build_imported(build) if info["method"] == IMPORTED else build_method(**build)
    except (EquiLabError, KeyError, TypeError) as e:
        raise CheckpointError(f"{stem_of(path)}.json: cannot rebuild the model ({e})") from e
    check_shapes(model, state, stem_of(path).with_suffix(".safetensors"))
    model.load_state_dict(state)
    return model.to(device).eval(), info


def load_train_state(path: str | Path, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Restore ``optimizer`` from ``<stem>.state``; returns the extra tensors saved with it (RNG state ...)."""
    info = read_info(path)
    st = info.get("state")
    if not st:
        raise CheckpointError(f"{stem_of(path)}.json has no resume state (an exported model?); cannot resume")
    file, sha = _file_entry(info, "state", stem_of(path))
    tensors = _load_verified(stem_of(path).with_name(file), sha)
    saved = st.get("optimizer")
    if not (isinstance(saved, dict) and {"scalars", "param_groups"} <= saved.keys()):
        raise CheckpointError(
            f"{stem_of(path)}.json: its resume state has no optimizer settings; cannot resume"
        )
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = v
    for key, v in saved["scalars"].items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = v
    try:
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{stem_of(path)}.state does not fit this optimizer: {e}") from e
    return {k.removeprefix("extra/"): v for k, v in tensors.items() if k.startswith("extra/")}


def export(src: str | Path, dest_stem: str | Path) -> Path:
    """Copy a checkpoint's weights + sidecar (no resume state) to ``dest_stem``; returns the new json path."""
    state, info = load_state(src)
    dest = Path(dest_stem)
    dest = dest.with_suffix("") if dest.suffix in (".json", ".safetensors") else dest
    info = {**info, "state": None}
    with io.atomic_files() as stage:
        _stage_weights_and_sidecar(stage, dest, state, info)
    return dest.with_suffix(".json")
