"""The compare page's robustness: CLeVER's probe accuracy under test-time perturbations
(``engine.eval.robustness``), read from a store's eval.json or computed on the store's own items.

Computed here, the probe is fitted on the clean store embeddings of ``n_fit`` items and scored on ``n_test``
other items of the same store, re-embedded under each perturbation (one seeded draw): a quick stand-in for the
evaluation's train -> test protocol (``python -m engine eval --only robustness``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from engine.core.errors import ConfigError
from engine.eval.robustness import PERTURBATION_LABELS, PERTURBATIONS, embed_perturbed, fit_probe
from engine.store.items import store_images

PREFIX = "robust_acc/"
# computed on the page: the probe's clean items and the perturbed items it is scored on
N_FIT, N_TEST = 300, 200
Progress = Callable[[int, int, str], None]  # (done, total, perturbation)


def robustness_rows(rows: list[dict] | None, space: str) -> list[dict]:
    """``[{"condition", "accuracy"}]`` of ``space`` from eval rows (``robust_acc/<condition>``), in file order."""
    out = []
    for r in rows or []:
        metric = str(r.get("metric", ""))
        if r.get("space") != space or not metric.startswith(PREFIX):
            continue
        try:
            out.append({"condition": metric.removeprefix(PREFIX), "accuracy": float(r["value"])})
        except (KeyError, TypeError, ValueError):
            continue
    return out


def page_protocol(n: int, n_fit: int = N_FIT, n_test: int = N_TEST, seed: int = 0) -> str:
    """How :func:`compute_robustness` measures a store of ``n`` items, in words, with the sizes it really uses."""
    fit, test = split_ids(n, n_fit, n_test, seed)
    return f"computed here: a probe on {len(fit)} clean items, scored on {len(test)} other items, seed {seed}"


def split_ids(n: int, n_fit: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted (fit, test) ids of ``range(n)`` under ``seed``; halves of what there is when n is short."""
    if n < 4:
        raise ConfigError(f"robustness needs at least 4 items; the store holds {n}.")
    if n_fit + n_test > n:
        n_fit, n_test = n // 2, n - n // 2
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n_fit]), np.sort(order[n_fit : n_fit + n_test])


def compute_robustness(
    model,
    store,
    space: str,
    n_fit: int = N_FIT,
    n_test: int = N_TEST,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict]:
    """``[{"condition", "accuracy"}]``: a probe on ``n_fit`` clean store embeddings of ``space``, scored on
    ``n_test`` other store images under every perturbation of ``PERTURBATIONS`` (seeded)."""
    if space not in store.spaces:
        raise ConfigError(f"the store has no space {space!r}; it has {list(store.spaces)}.")
    fit, test = split_ids(store.n, n_fit, n_test, seed)
    labels = np.asarray(store.labels)
    if len(np.unique(labels[fit])) < 2:
        raise ConfigError("the fitted items hold a single class: no probe to fit.")
    predict = fit_probe(np.asarray(store.embeddings(space))[fit], labels[fit])
    images = torch.from_numpy(np.ascontiguousarray(store_images(store, test))).permute(0, 3, 1, 2)
    device = str(next(model.parameters()).device)
    out = []
    for i, name in enumerate(PERTURBATIONS):
        feats = embed_perturbed(model, images, name, seed * 1000 + i, device)
        if space not in feats:
            raise ConfigError(f"the model's embed() has no space {space!r}.")
        out.append({"condition": name, "accuracy": float((predict(feats[space]) == labels[test]).mean())})
        if progress is not None:
            progress(i + 1, len(PERTURBATIONS), name)
    return out


def robustness_table(per_model: dict[str, list[dict]]) -> pd.DataFrame:
    """condition x model accuracy (conditions in ``PERTURBATIONS`` order, named by ``PERTURBATION_LABELS``;
    unknown ones after, by their own name; NaN where missing)."""
    cols = {m: {r["condition"]: r["accuracy"] for r in rows} for m, rows in per_model.items()}
    conds = [c for c in PERTURBATIONS if any(c in v for v in cols.values())]
    conds += sorted({c for v in cols.values() for c in v} - set(conds))
    df = pd.DataFrame({m: [v.get(c, np.nan) for c in conds] for m, v in cols.items()}, dtype=float)
    df.insert(0, "condition", [PERTURBATION_LABELS.get(c, c) for c in conds])  # "rotation ±90°", as measured
    return df
