"""Model comparison, kNN label agreement, factor probes and map-selection helpers for the dashboard (no Streamlit).

Two stores of the same dataset share one id space (row i is the same image in both), so neighbourhoods can be
compared item by item. Plotly selection events carry per-trace point indices; the map puts the global row id
in ``customdata`` and :func:`selection_ids` maps an event back to those ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.core.errors import ConfigError
from engine.eval.evaluate import factor_targets  # the factors eval probes, one definition
from engine.eval.metrics import factor_probe


@dataclass(frozen=True)
class OverlapRanking:
    """Items ordered from most to least changed neighbourhood between two models."""

    ids: np.ndarray  # int64 [n] global row ids, most changed first
    overlap: np.ndarray  # float [n] overlap@k of those ids, ascending


def knn_ids(embeddings: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Exact cosine k nearest neighbours of every row among the other rows: int64 [N, k].

    Self is excluded (an item is not its own neighbour). Ties are broken by the lower id so the result is
    deterministic. Rows are processed in chunks so memory stays at ``chunk * N`` floats.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    n = x.shape[0]
    if not 0 < k < n:
        raise ConfigError(f"k={k} must be between 1 and the number of items minus one ({n - 1})")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        sims = x[start : start + chunk] @ x.T  # [c, N]
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # exclude self
        # stable sort of -sim: highest similarity first, lower id on ties
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        out[start : start + chunk] = order
    return out


def neighbour_overlap(nbrs_a: np.ndarray, nbrs_b: np.ndarray) -> np.ndarray:
    """Per-item overlap@k: |N_a(i) ∩ N_b(i)| / k for two [N, k] neighbour-id arrays; float [N] in [0, 1]."""
    a, b = np.asarray(nbrs_a), np.asarray(nbrs_b)
    if a.shape != b.shape or a.ndim != 2:
        raise ConfigError(f"neighbour arrays must have the same [N, k] shape, got {a.shape} and {b.shape}")
    # [N, k, k] equality is cheap for the small k used here and avoids a Python set per item.
    hits = (a[:, :, None] == b[:, None, :]).any(axis=2)
    return hits.sum(axis=1) / a.shape[1]


def overlap_at_k(emb_a: np.ndarray, emb_b: np.ndarray, k: int = 10) -> np.ndarray:
    """Overlap@k between the cosine kNN of the same items under two models: float [N]."""
    if len(emb_a) != len(emb_b):
        raise ConfigError(
            f"stores hold different numbers of items ({len(emb_a)} vs {len(emb_b)}): same dataset?"
        )
    return neighbour_overlap(knn_ids(emb_a, k), knn_ids(emb_b, k))


def label_agreement(embeddings: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-item kNN label agreement: the fraction of each item's k cosine nearest neighbours (the other items of
    the store, exact) sharing its label; float [N] in [0, 1]. ``k`` is capped at N - 1."""
    lab = np.asarray(labels)
    if len(lab) != len(embeddings):
        raise ConfigError(f"{len(lab)} labels for {len(embeddings)} embeddings")
    nb = knn_ids(embeddings, min(k, len(lab) - 1))
    return (lab[nb] == lab[:, None]).mean(axis=1)


def overlap_chance(n: int, k: int) -> float:
    """Expected overlap@k of two neighbourhoods drawn at random from the other ``n - 1`` items: k / (n - 1) (each
    of one model's k neighbours is among the other's with probability k / (n - 1)); the baseline of overlap@k."""
    if n < 2 or not 1 <= k <= n - 1:
        raise ConfigError(f"overlap@k needs 1 <= k <= n - 1, got k={k} for n={n}")
    return k / (n - 1)


def same_label_chance(labels: np.ndarray, of: int | None = None) -> float:
    """The share of neighbours expected to share an item's label if they were drawn at random from the other
    items of the store: the baseline of :func:`label_agreement` and of a retrieval's label matches.

    ``of`` a label: for an item of that label, (n_label - 1) / (N - 1). None: averaged over every item,
    sum_c n_c (n_c - 1) / (N (N - 1))."""
    lab = np.asarray(labels)
    n = len(lab)
    if n < 2:
        raise ConfigError(f"a chance of sharing a label needs at least 2 items, got {n}")
    if of is not None:  # the item itself is one of its label's items, and not its own neighbour
        return max(int(np.sum(lab == of)) - 1, 0) / (n - 1)
    counts = np.unique(lab, return_counts=True)[1].astype(np.float64)
    return float(np.sum(counts * (counts - 1)) / (n * (n - 1)))


def rank_changed(overlap: np.ndarray, top: int = 20, tiebreak: np.ndarray | None = None) -> OverlapRanking:
    """The ``top`` items whose neighbourhoods changed most: lowest overlap first; among equal overlaps the lower
    ``tiebreak`` (e.g. the overlap at a larger k, so items tied at 0 are still ordered), then the lower id."""
    ov = np.asarray(overlap, dtype=np.float64)
    second = np.zeros(len(ov)) if tiebreak is None else np.asarray(tiebreak, dtype=np.float64)
    if second.shape != ov.shape:
        raise ConfigError(f"tiebreak has shape {second.shape}, overlap {ov.shape}")
    order = np.lexsort((np.arange(len(ov)), second, ov))[:top]
    return OverlapRanking(ids=order.astype(np.int64), overlap=ov[order])


def probe_factors(
    embeddings: np.ndarray,
    meta: Any,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Per-factor ridge R² of the shapes factors in ``meta`` from ``embeddings`` (one store's items), with
    engine.eval.metrics.factor_probe fitted on a random half of the items and scored on the other half (hue and
    rotation circular, as ``python -m engine eval --only factors`` does with the train split).

    Returns [{"factor": name, "r2": value}]; [] when ``meta`` holds no factor. ``progress(done, total, factor)``
    is called after each factor.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    targets = factor_targets(meta)
    if len(x) != len(meta):
        raise ConfigError(f"{len(meta)} metadata rows for {len(x)} embeddings")
    if len(x) < 4:
        raise ConfigError(f"probing needs at least 4 items, the store has {len(x)}")
    order = np.random.default_rng(seed).permutation(len(x))
    fit, score = order[: len(x) // 2], order[len(x) // 2 :]
    out = []
    for done, (name, (y, mask, period)) in enumerate(targets.items(), start=1):
        tr, te = fit[mask[fit]], score[mask[score]]
        r2 = (
            factor_probe(x[tr], y[tr], x[te], y[te], period=period) if len(tr) > 1 and len(te) > 1 else np.nan
        )
        out.append({"factor": name, "r2": float(r2)})
        if progress is not None:
            progress(done, len(targets), name)
    return out


def selection_ids(selection: Mapping[str, Any] | None) -> np.ndarray:
    """Global row ids of a Plotly selection event (``event.selection``), read from each point's customdata.

    ``point_index`` is per trace, so it is never used. Points without customdata (e.g. a highlight overlay
    trace) are ignored. Returns sorted unique int64 ids.
    """
    if not selection:
        return np.zeros(0, dtype=np.int64)
    ids = []
    for point in selection.get("points", []) or []:
        cd = point.get("customdata")
        if cd is None:
            continue
        ids.append(int(cd[0] if isinstance(cd, list | tuple) else cd))
    return np.unique(np.asarray(ids, dtype=np.int64))
