"""``python -m engine eval``: score every embedding space of a store (kNN, linear probe, shapes factor probes,
pretext-head accuracy beside chance and ceiling, CLeVER part alignment, displacement prediction) and write JSON + CSV.

Each evaluator is a registry entry ``name -> fn(ctx) -> list[row]`` with rows ``{"space", "metric", "value"}``;
evaluators that need the model (pretext, clever, displacement, robustness) load it from the store's checkpoint.

Linear probe: sklearn ``LogisticRegression`` (lbfgs, C=1) on features standardised with the train statistics,
fitted on at most ``probe_cap`` train items. Factor probes: closed-form ridge on the same standardised features,
reporting test R^2; circular factors (hue; rotation angle x symmetry order) regress (cos, sin) and pool R^2 over
the pair.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io as _io
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.augment import Recipe, apply, augment, identity_params, sample_params
from engine.augment.pretext import expand, get_task
from engine.core.errors import ConfigError
from engine.core.io import atomic_write_json, atomic_write_text
from engine.data.ceilings import pretext_ceiling
from engine.eval.colour import colour_targets
from engine.eval.context import PROTOCOL, EvalContext, protocol_row, sample_ids, sample_images
from engine.eval.displacement import eval_recipe, run_displacement_eval, scored_space, store_dataset
from engine.eval.measures import derangement
from engine.eval.metrics import (
    factor_probe,
    knn_eval,
    linear_probe,
    probe_accuracy,
    row_cos,
    sgd_probe_for,
    train_sgd_probes,
)
from engine.eval.robustness import eval_robustness
from engine.methods.protocol import head_task, logits_key
from engine.store.build import ensure_store, resolve_device
from engine.store.format import Store, StoreOptions, open_store
from engine.store.items import store_spec
from engine.train.checkpoint import load_model

log = logging.getLogger(__name__)
Row = dict[str, Any]
PROBES = ("lbfgs", "sgd")


def eval_knn(ctx: EvalContext) -> list[Row]:
    """Weighted cosine kNN (k=200, T=0.1): train store is the bank, test store the queries."""
    rows = []
    for s in ctx.test.spaces:
        acc = knn_eval(ctx.train.embeddings(s), ctx.train.labels, ctx.test.embeddings(s), ctx.test.labels)
        rows.append({"space": s, "metric": "knn_acc", "value": acc})
    return rows


def eval_linear(ctx: EvalContext) -> list[Row]:
    """Linear probe accuracy on frozen features for every space (``ctx.probe``: lbfgs or the papers' sgd)."""
    if ctx.probe not in PROBES:
        raise ConfigError(f"unknown linear probe {ctx.probe!r}; choose from {list(PROBES)}")
    if ctx.probe == "sgd":
        return eval_linear_sgd(ctx)
    ids = sample_ids(ctx.train.n, ctx.probe_cap, ctx.seed)
    rows = [
        protocol_row(
            "probe", f"lbfgs logistic regression (C=1) on standardised features of {len(ids)} train items"
        )
    ]
    for s in ctx.test.spaces:
        acc = linear_probe(
            np.asarray(ctx.train.embeddings(s))[ids],
            ctx.train.labels[ids],
            ctx.test.embeddings(s),
            ctx.test.labels,
        )
        rows.append({"space": s, "metric": "linear_acc", "value": acc})
    return rows


def probe_views(size: int) -> Recipe:
    """The papers' probe augmentation: RandomResizedCrop(size, scale 0.08-1, bicubic) + horizontal flip."""
    return Recipe(size=size, scale=(0.08, 1.0), jitter_p=0.0, gray_p=0.0)


def eval_linear_sgd(ctx: EvalContext) -> list[Row]:
    """The papers' linear probe: one linear layer per space, SGD with the method's paper lr and a cosine
    schedule for ``ctx.probe_epochs`` epochs on frozen features of fresh crop+flip views of the train images
    (``probe_cap`` of them; 0 = all); tested on the test store's embeddings (whole images, no augmentation)."""
    model = _model(ctx)
    imgs, ids = sample_images(ctx.train, ctx.probe_cap if ctx.probe_cap > 0 else ctx.train.n, ctx.seed)
    labels = torch.as_tensor(np.array(ctx.train.labels[ids]), dtype=torch.long)
    probe = sgd_probe_for(getattr(model, "name", None))
    recipe = probe_views(int(getattr(model, "image_size", imgs.shape[-1])))
    spaces = [s for s in ctx.test.spaces]
    hw = tuple(imgs.shape[-2:])
    n_batches = max(1, -(-len(imgs) // probe.batch))

    def batches(epoch: int):
        g = torch.Generator(device=ctx.device).manual_seed(ctx.seed * 100_003 + epoch)
        order = torch.randperm(len(imgs), generator=torch.Generator().manual_seed(ctx.seed + epoch))
        for s in range(0, len(imgs), probe.batch):
            b = order[s : s + probe.batch]
            x = apply(imgs[b].to(ctx.device), sample_params(recipe, len(b), hw, g))
            with torch.no_grad():
                emb = model.embed(x)
            yield {k: emb[k].float().cpu() for k in spaces}, labels[b]

    batches.n_batches = n_batches  # type: ignore[attr-defined]
    dims = {s: int(np.asarray(ctx.test.embeddings(s)).shape[1]) for s in spaces}
    n_cls = int(max(np.max(ctx.train.labels), np.max(ctx.test.labels))) + 1
    heads = train_sgd_probes(batches, dims, n_cls, probe, ctx.probe_epochs, ctx.seed)
    what = (
        f"sgd lr {probe.lr:g} momentum {probe.momentum:g}{' nesterov' if probe.nesterov else ''} cosine, "
        f"{ctx.probe_epochs} epochs, batch {probe.batch}, crop+flip views of {len(imgs)} train items ({probe.source})"
    )
    rows = [protocol_row("probe", what)]
    for s in spaces:
        acc = probe_accuracy(heads[s], np.asarray(ctx.test.embeddings(s)), np.asarray(ctx.test.labels))
        rows.append({"space": s, "metric": "linear_acc", "value": acc, "note": "sgd probe"})
    return rows


def factor_targets(meta) -> dict[str, tuple[np.ndarray, np.ndarray, float | None]]:
    """name -> (target, mask, period) for the shapes factors present in ``meta``."""
    out = {}
    n = len(meta)
    for name, period in (("hue", 1.0), ("scale", None), ("x", None), ("y", None)):
        if name in meta:
            out[name] = (meta[name].to_numpy(np.float64), np.ones(n, bool), period)
    if "angle" in meta and "symmetry" in meta:
        sym = meta["symmetry"].to_numpy(np.int64)
        # Symmetry order k: the image repeats every 360/k degrees, so regress cos/sin of k * angle.
        out["rotation"] = ((meta["angle"].to_numpy(np.float64) * sym) % 360.0, sym > 0, 360.0)
    return out


# Discrete metadata columns probed for accuracy (shapes_colour's palette colour).
CLASS_TARGETS = ("colour_class",)
MIN_PROBE_ITEMS = 10  # a factor probe needs at least this many items with a defined target on each side


def eval_factors(ctx: EvalContext) -> list[Row]:
    """Per-factor ridge R^2: the shapes generator's factors (hue and rotation circular; skipped for datasets
    without them) and, for every dataset, the image's own colour (engine.eval.colour: saturation-weighted mean
    hue, circular, and mean saturation, from the store's thumbnails)."""
    ids = sample_ids(ctx.train.n, ctx.probe_cap, ctx.seed)
    train = {k: (y[ids], m[ids], p) for k, (y, m, p) in factor_targets(ctx.train.meta).items()}
    train.update(colour_targets(np.asarray(ctx.train.thumbnails[ids])))  # ids are sorted: one memmap pass
    test = {**factor_targets(ctx.test.meta), **colour_targets(ctx.test.thumbnails)}
    rows = []
    for s in ctx.test.spaces:
        xtr, xte = np.asarray(ctx.train.embeddings(s))[ids], np.asarray(ctx.test.embeddings(s))
        for name, (ytr, mtr, period) in train.items():
            yte, mte, _ = test[name]
            if min(mtr.sum(), mte.sum()) < MIN_PROBE_ITEMS or np.ptp(ytr[mtr]) == 0:
                rows.append(
                    {"space": s, "metric": f"r2_{name}", "value": float("nan"),
                     "note": f"undefined: {int(mtr.sum())} train / {int(mte.sum())} test items with a varying target"}
                )  # fmt: skip
                continue
            r2 = factor_probe(xtr[mtr], ytr[mtr], xte[mte], yte[mte], period=period)
            rows.append({"space": s, "metric": f"r2_{name}", "value": r2})
        for name in CLASS_TARGETS:  # discrete downstream tasks: linear-probe accuracy beside chance
            if name in ctx.train.meta and name in ctx.test.meta:
                ytr, yte = ctx.train.meta[name].to_numpy()[ids], ctx.test.meta[name].to_numpy()
                acc = linear_probe(xtr, ytr, xte, yte)
                chance = float(np.bincount(yte).max() / len(yte))  # the majority class of the test split
                rows += [{"space": s, "metric": f"{name}_acc", "value": acc},
                         {"space": s, "metric": f"{name}_chance", "value": chance}]  # fmt: skip
    return rows


def _model(ctx: EvalContext):

    model, _ = load_model(ctx.test.checkpoint, ctx.device)
    return model


def pretext_baselines(task: str, spec) -> dict[str, float]:
    """What a pretext accuracy is read against: chance (1 / labels) and, on the generated shapes datasets, the
    identifiability ceiling (engine.data.ceilings: the Bayes-optimal accuracy; a turned circle is the same image)."""
    out = {"chance": 1.0 / get_task(task).n_labels}
    if spec.name in ("shapes", "shapes_upright"):
        default = "upright" if spec.name == "shapes_upright" else "uniform"
        out["ceiling"] = pretext_ceiling(task, str(spec.options.get("orientation", default)))
    return out


@torch.no_grad()
def pretext_accuracy(model, images: torch.Tensor, task: str, size: int, device: str = "cpu") -> float:
    """Accuracy of ``model.embed(x)[logits_key(task)]`` over every image (uint8 [N, 3, H, W]) under every label of
    ``task``: the identity view at ``size`` px, then ``augment.pretext.expand`` (labels balanced, so a constant
    guess scores exactly chance)."""
    key, hw = logits_key(task), tuple(images.shape[-2:])
    correct = total = 0
    for s in range(0, len(images), 256):
        b = images[s : s + 256].to(device)
        xt, y = expand(apply(b, identity_params(len(b), hw, size, device)), task)
        for c in range(0, len(xt), 1024):
            pred = model.embed(xt[c : c + 1024])[key].argmax(1)
            correct += int((pred.cpu() == y[c : c + 1024].cpu()).sum())
        total += len(y)
    return correct / max(total, 1)


def eval_pretext(ctx: EvalContext) -> list[Row]:
    """The model's pretext head (E-SSL's, a ``pretext``/``rotation`` model's) scored by :func:`pretext_accuracy`
    on ``n_eval`` test images, beside chance and, on shapes, the task's identifiability ceiling. Rows
    ``<task>_acc``, ``<task>_chance``, ``<task>_ceiling`` in the head's logits space (``rotation_logits`` for
    rotation, else ``pretext_logits``)."""
    model = _model(ctx)
    task = head_task(model)
    if task is None:
        return []
    key = logits_key(task)
    imgs, _ = sample_images(ctx.test, ctx.n_eval, ctx.seed)
    size = int(getattr(model, "rot_size", model.image_size))
    acc = pretext_accuracy(model, imgs, task, size, ctx.device)
    rows = [{"space": key, "metric": f"{task}_acc", "value": acc}]
    for name, value in pretext_baselines(task, store_spec(ctx.test.manifest)).items():
        rows.append({"space": key, "metric": f"{task}_{name}", "value": value})
    return rows


# CLeVER's parts: the raw backbone slices and the head outputs the losses act on (NT-Xent on g_IR, separation
# on g_EF), each with what it is.
CLEVER_PARTS: dict[str, str] = {
    "invariant_part": "raw backbone slice IR (post-ReLU; not where a loss acts)",
    "equivariant_part": "raw backbone slice EF (post-ReLU; not where a loss acts)",
    "ir_head": "g_IR(IR): the head output NT-Xent acts on (target: views agree)",
    "ef_head": "g_EF(EF): the head output the separation loss acts on (target: views orthogonal, cos 0)",
}


def clever_rows(model, imgs: torch.Tensor, recipe: Recipe, seed: int = 0, device: str = "cpu") -> list[Row]:
    """``cross_view_cos`` (two views of one image) beside ``between_image_cos`` (the same views' cosine between
    different images, paired by a seeded derangement) for every part in :data:`CLEVER_PARTS` that the model
    exposes (``model.heads(x)`` where present, else ``embed``)."""
    g = torch.Generator(device=device).manual_seed(seed)
    parts = model.heads if hasattr(model, "heads") else model.embed
    with torch.no_grad():
        v1, _ = augment(imgs.to(device), recipe, g)
        v2, _ = augment(imgs.to(device), recipe, g)
        e1, e2 = parts(v1), parts(v2)
    other = derangement(len(imgs), seed) if len(imgs) >= 2 else None
    rows = []
    for s, what in CLEVER_PARTS.items():
        if s not in e1:
            continue
        a, b = e1[s].float().cpu().numpy(), e2[s].float().cpu().numpy()
        between = float(row_cos(a, b[other]).mean()) if other is not None else float("nan")
        rows.append(
            {"space": s, "metric": "cross_view_cos", "value": float(row_cos(a, b).mean()), "note": what}
        )
        rows.append({"space": s, "metric": "between_image_cos", "value": between, "note": what})
    return rows


def eval_clever(ctx: EvalContext) -> list[Row]:
    """CLeVER: cross-view cosine of the raw IR/EF slices and of the g_IR/g_EF head outputs, each beside the
    between-image cosine (the views of the dataset's recipe when the model has none)."""

    if "invariant_part" not in ctx.test.spaces:
        return []
    model = _model(ctx)
    imgs, _ = sample_images(ctx.test, ctx.n_eval, ctx.seed)
    recipe = eval_recipe(model, store_dataset(ctx.test))
    return clever_rows(model, imgs, recipe, ctx.seed, ctx.device)


def eval_displacement(ctx: EvalContext) -> list[Row]:
    """Fit post-hoc predictors on train-split recipe views, score every space on test views + shuffled control."""

    return run_displacement_eval(_model(ctx), ctx)


EVALUATORS: dict[str, Callable[[EvalContext], list[Row]]] = {
    "knn": eval_knn,
    "linear": eval_linear,
    "factors": eval_factors,
    "pretext": eval_pretext,  # the pretext head's accuracy (rotation_acc for E-SSL's rotation head)
    "clever": eval_clever,
    "displacement": eval_displacement,
    "robustness": eval_robustness,  # CLeVER's test-time perturbations (engine.eval.robustness)
}
ARRAY_ONLY = ("knn", "linear", "factors")  # need no model, no augmentation


def evaluate(ctx: EvalContext, which: tuple[str, ...] = tuple(EVALUATORS)) -> list[Row]:
    """Run the chosen evaluators; each row also records the seconds its evaluator took."""
    unknown = sorted(set(which) - set(EVALUATORS))
    if unknown:
        raise ConfigError(f"unknown evaluators {unknown}; choose from {sorted(EVALUATORS)}")
    rows = []
    for name in which:
        t0 = time.perf_counter()
        got = EVALUATORS[name](ctx)
        dt = time.perf_counter() - t0
        log.info("eval %s: %d results in %.1fs", name, len(got), dt)
        rows += [{**r, "evaluator": name} for r in got]
    return rows


def splitprotocol_row(rows: list[Row]) -> tuple[list[Row], dict[str, str]]:
    """(result rows, ``{key: value}`` of the protocol records among ``rows``)."""
    proto = {r["metric"]: r.get("note", "") for r in rows if r.get("space") == PROTOCOL}
    return [r for r in rows if r.get("space") != PROTOCOL], proto


def write_results(rows: list[Row], out_dir: Path, info: dict[str, Any]) -> tuple[Path, Path]:
    """``eval.json`` (info, ``protocol``: the recipe and probe used, and the rows; an undefined value is NaN with
    a ``note`` saying why) and ``eval.csv`` (evaluator, space, metric, value, note) in ``out_dir``."""
    results, proto = splitprotocol_row(rows)
    buf = _io.StringIO()
    fields = ["evaluator", "space", "metric", "value", "note"]
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(results)
    doc = {**info, "protocol": {**info.get("protocol", {}), **proto}, "results": results}
    return (
        atomic_write_json(out_dir / "eval.json", doc),
        atomic_write_text(out_dir / "eval.csv", buf.getvalue()),
    )


# Columns of the comparison table: (header, space, metric); the "disp" columns use each model's scored space
# (engine.eval.displacement.scored_space: "equivariant" with EquiMod's own predictor, else projector, else backbone).
# Old eval.json files (before the measures of docs/measures.md) lack the new names: their cells read "—".
TABLE_COLUMNS = (
    ("kNN", "backbone", "knn_acc"),
    ("linear", "backbone", "linear_acc"),
    ("R² hue", "backbone", "r2_hue"),
    ("R² scale", "backbone", "r2_scale"),
    ("R² rotation", "backbone", "r2_rotation"),
    ("R² x", "backbone", "r2_x"),
    ("R² y", "backbone", "r2_y"),
    ("R² image hue", "backbone", "r2_image_hue"),
    ("R² image sat.", "backbone", "r2_image_saturation"),
    ("colour class", "backbone", "colour_class_acc"),
    ("rot. acc", "rotation_logits", "rotation_acc"),
    ("g_IR cos", "ir_head", "cross_view_cos"),
    ("g_EF cos", "ef_head", "cross_view_cos"),
    ("g_EF between", "ef_head", "between_image_cos"),
    ("cos(Δ, Δ̂)", "disp", "disp/method/cos"),
    ("R²(Δ)", "disp", "disp/method/r2"),
    ("mean-Δ cos", "disp", "disp/mean_delta/cos"),
    ("params-only cos", "disp", "disp/params_only/cos"),
    ("image-only cos", "disp", "disp/image_only/cos"),
    ("shuffled cos", "disp", "disp/shuffled_params/cos"),
    ("gain cos", "disp", "disp/gain/cos"),
    ("gain R²", "disp", "disp/gain/r2"),
    ("image dep.", "disp", "sweep/disp/image/ratio"),
    ("invariance", "disp", "invariance/relative"),
    ("inv. backbone", "backbone", "invariance/relative"),
)


def results_table(files: list[Path]) -> str:
    """A markdown table comparing ``eval.json`` files (one row per model, columns :data:`TABLE_COLUMNS`)."""
    lines = [
        "| model | " + " | ".join(c[0] for c in TABLE_COLUMNS) + " |",
        "|---" * (len(TABLE_COLUMNS) + 1) + "|",
    ]
    for f in files:
        doc = json.loads(Path(f).read_text())
        values = {(r["space"], r["metric"]): r["value"] for r in doc["results"]}
        disp = scored_space(r["space"] for r in doc["results"])
        cells = []
        for _, space, metric in TABLE_COLUMNS:
            v = values.get((disp if space == "disp" else space, metric))
            cells.append(fmt_value(v))
        name = Path(doc["source"].get("checkpoint", f)).stem
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_value(v: Any, digits: int = 3) -> str:
    """A table cell: "—" when absent, "n/a" when undefined (NaN), else the number."""
    if v is None:
        return "—"
    v = float(v)
    return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a store: kNN, linear/factor probes, rotation, CLeVER parts, displacement prediction",
        description="Evaluate every embedding space of a test store against a train store (built on demand from "
        "the same checkpoint when --train-store is not given). Writes eval.json and eval.csv.",
    )
    p.add_argument("--store", type=Path, help="test-split store directory")
    p.add_argument(
        "--train-store", type=Path, help="train-split store (default: built/reused from the checkpoint)"
    )
    p.add_argument("--checkpoint", type=Path, help="checkpoint: build/reuse its stores instead of --store")
    p.add_argument("--dataset", default="shapes", help="dataset with --checkpoint (default: shapes)")
    p.add_argument("--data-root", default=None, help="dataset root for file-backed datasets")
    p.add_argument(
        "--stores", type=Path, default=Path("stores"), help="store root with --checkpoint (default: stores/)"
    )
    p.add_argument(
        "--only",
        nargs="+",
        default=list(EVALUATORS),
        choices=list(EVALUATORS),
        help="evaluators to run (default: all)",
    )
    p.add_argument("--displacement", action="store_true", help="shorthand for --only displacement")
    sizes = {
        f.name: f.default for f in dataclasses.fields(EvalContext) if f.default is not dataclasses.MISSING
    }
    for name, what in (
        ("probe_cap", "train items used by the probes (0 = the whole train split)"),
        ("probe_epochs", "epochs of the sgd probe"),
        ("n_fit", "train images for post-hoc predictors"),
        ("n_eval", "test images for model-based scores"),
        ("n_sweep", "test images per augmentation strength in the displacement sweeps"),
        ("seed", "sampling seed"),
    ):
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, type=int, default=sizes[name], help=f"{what} (default: {sizes[name]})")
    p.add_argument(
        "--probe",
        choices=list(PROBES),
        default=sizes["probe"],
        help="linear probe: lbfgs (logistic regression on stored features) or sgd (the papers': crop+flip "
        f"views, SGD with the method's paper lr, cosine) (default: {sizes['probe']})",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--out", type=Path, default=None, help="results directory (default: the test store)")
    p.add_argument(
        "--table",
        type=Path,
        nargs="+",
        metavar="EVAL_JSON",
        help="instead of evaluating, print a markdown table comparing these eval.json files",
    )
    p.set_defaults(func=_cmd_eval)


def _stores(args: argparse.Namespace) -> tuple[Store, Store]:

    if args.store is None and args.checkpoint is None:
        raise ConfigError("eval needs --store DIR or --checkpoint PATH (with --dataset)")
    if args.store is not None:
        test = open_store(args.store)
        src = test.manifest["source"]
        ckpt, ds, root = src.get("checkpoint"), src.get("dataset"), src.get("data_root")
    else:
        ckpt, ds, root = args.checkpoint, args.dataset, args.data_root
        test = open_store(ensure_store(ckpt, ds, "test", root=root, store_root=args.stores))
    if args.train_store is not None:
        return test, open_store(args.train_store)
    # The train split only feeds probes and kNN banks: no UMAP map needed (it is most of a store's build time).
    train_options = StoreOptions(umap=False)
    variant = store_spec(test.manifest).options  # the train store embeds the test store's dataset variant
    return test, open_store(
        ensure_store(ckpt, ds, "train", root, args.stores, options=train_options, data_options=variant)
    )


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.table:
        print(results_table(args.table))
        return 0

    test, train = _stores(args)
    ctx = EvalContext(
        test=test,
        train=train,
        probe_cap=args.probe_cap,
        n_fit=args.n_fit,
        n_eval=args.n_eval,
        n_sweep=args.n_sweep,
        seed=args.seed,
        device=str(resolve_device(args.device)),
        probe=args.probe,
        probe_epochs=args.probe_epochs,
    )
    which = ("displacement",) if args.displacement else tuple(args.only)
    rows = evaluate(ctx, which)
    info = {"test_store": str(test.path), "train_store": str(train.path), "source": test.manifest["source"]}
    js, cs = write_results(rows, args.out or test.path, info)
    results, proto = splitprotocol_row(rows)
    for k, v in proto.items():
        print(f"{'protocol':>12}  {k}: {v}")
    for r in results:
        print(
            f"{r['evaluator']:>12}  {r['space']:<18} {r['metric']:<34} {r['value']:.4f}  {r.get('note', '')}"
        )
    print(f"wrote {js} and {cs}")
    return 0
