"""Metrics on frozen features (arrays in, floats out): linear probes, factor probes, displacement scores.

The weighted kNN classifier lives in :mod:`engine.eval.knn` (shared with the trainer's online monitor); this module
adds the linear probe, the per-factor probes of the shapes dataset and the displacement metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from engine.eval.knn import knn_accuracy


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = train.mean(axis=0)
    sd = train.std(axis=0) + 1e-6
    return (train - mu) / sd, (test - mu) / sd


def linear_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, c: float = 1.0
) -> float:
    """Test accuracy of a multinomial logistic regression (L2, C=``c``, lbfgs) on standardised frozen features."""

    tr, te = _standardize(np.asarray(train_x, np.float64), np.asarray(test_x, np.float64))
    clf = LogisticRegression(C=c, max_iter=500)
    clf.fit(tr, np.asarray(train_y))
    return float((clf.predict(te) == np.asarray(test_y)).mean())


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge ``y ~ x @ w + b`` (bias unpenalised): returns (w [D, T], b [T])."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).reshape(len(x), -1)
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
    return w, my - mx @ w


def r2_score(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Coefficient of determination pooled over all target columns: 1 - SSE / SST."""
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    y_hat = np.asarray(y_hat, np.float64).reshape(len(y), -1)
    sst = float(((y - y.mean(axis=0)) ** 2).sum())
    return 1.0 - float(((y - y_hat) ** 2).sum()) / max(sst, 1e-12)


def factor_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    period: float | None = None,
    alpha: float = 1.0,
) -> float:
    """Test R^2 of a ridge regression from standardised features to a factor.

    A circular factor (``period`` set, e.g. 1.0 for hue or 360/order for a rotation of symmetry ``order``)
    is regressed as the pair (cos, sin) of its angle, and the R^2 of the pair is pooled over both columns,
    so the wrap-around (hue 0.99 ~ 0.01) costs nothing.
    """
    tr, te = _standardize(np.asarray(train_x, np.float64), np.asarray(test_x, np.float64))
    ytr, yte = np.asarray(train_y, np.float64), np.asarray(test_y, np.float64)
    if period is not None:
        ytr, yte = _circle(ytr, period), _circle(yte, period)
    w, b = ridge_fit(tr, ytr, alpha=alpha * len(tr) / 100.0)
    return r2_score(yte, te @ w + b)


def _circle(v: np.ndarray, period: float) -> np.ndarray:
    a = 2 * np.pi * v / period
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def class_probe(train_x, train_y, test_x, test_y) -> float:
    """Alias of :func:`linear_probe` for a discrete factor (shape class)."""
    return linear_probe(train_x, train_y, test_x, test_y)


# ---------------------------------------------------------------- displacement metrics (rows are items)


def row_cos(a: np.ndarray, b: np.ndarray, undefined: float = 0.0) -> np.ndarray:
    """Cosine similarity of matching rows of ``a`` and ``b`` ([N, D] -> [N]); ``undefined`` where a row is zero."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, (a * b).sum(axis=1) / np.maximum(den, 1e-300), undefined)


def rel_error(delta: np.ndarray, delta_hat: np.ndarray) -> np.ndarray:
    """|delta - delta_hat| / |delta| per row (nan where the actual displacement is zero)."""
    delta, delta_hat = np.atleast_2d(delta).astype(np.float64), np.atleast_2d(delta_hat).astype(np.float64)
    n = np.linalg.norm(delta, axis=1)
    err = np.linalg.norm(delta - delta_hat, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, err / n, np.nan)


def eqgain(y_t: np.ndarray, y_hat_t: np.ndarray, y_0: np.ndarray) -> np.ndarray:
    """EquiMod's gain: cos(y_t, y_hat_t) - cos(y_t, y_0) per row (> 0: the predictor beats 'no change')."""
    return row_cos(y_t, y_hat_t) - row_cos(y_t, y_0)


def top1_retrieval(y_t: np.ndarray, y_hat_t: np.ndarray) -> float:
    """Fraction of rows whose prediction is closest (cosine) to its own actual view among the batch."""
    a = np.asarray(y_t, np.float64)
    p = np.asarray(y_hat_t, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    return float((np.argmax(p @ a.T, axis=1) == np.arange(len(a))).mean())


@dataclass(frozen=True)
class DisplacementScores:
    """Means over a batch of (image, augmentation) pairs."""

    cos: float  # mean cos(delta, delta_hat)
    rel_err: float  # median |delta - delta_hat| / |delta| (median: a few near-zero |delta| dominate a mean)
    eqgain: float  # mean cos(y_t, y_hat_t) - cos(y_t, y_0)
    invariance: float  # mean cos(y_t, y_0)
    top1: float  # retrieval of the actual view among the batch from the prediction
    norm: float  # mean |delta|
    n: int


def displacement_scores(y0: np.ndarray, yt: np.ndarray, y_hat: np.ndarray) -> DisplacementScores:
    """Score predicted view embeddings ``y_hat`` against actual ``yt`` given originals ``y0`` (all [N, D])."""
    y0, yt, y_hat = (np.atleast_2d(np.asarray(v, np.float64)) for v in (y0, yt, y_hat))
    delta, delta_hat = yt - y0, y_hat - y0
    rel = rel_error(delta, delta_hat)
    return DisplacementScores(
        cos=float(row_cos(delta, delta_hat).mean()),
        rel_err=float(np.nanmedian(rel)) if np.isfinite(rel).any() else float("nan"),
        eqgain=float(eqgain(yt, y_hat, y0).mean()),
        invariance=float(row_cos(yt, y0).mean()),
        top1=top1_retrieval(yt, y_hat),
        norm=float(np.linalg.norm(delta, axis=1).mean()),
        n=len(y0),
    )


def knn_eval(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int = 200,
    t: float = 0.1,
) -> float:
    """Weighted cosine kNN accuracy (k=200, T=0.1) through :func:`engine.eval.knn.knn_accuracy` on numpy arrays."""

    n_cls = int(max(np.max(train_y), np.max(test_y))) + 1
    return knn_accuracy(
        torch.from_numpy(np.array(train_x, np.float32)),
        torch.from_numpy(np.array(train_y, np.int64)),  # a copy: store labels are read-only memmaps
        torch.from_numpy(np.array(test_x, np.float32)),
        torch.from_numpy(np.array(test_y, np.int64)),
        n_cls,
        k=k,
        temperature=t,
    )


# ---------------------------------------------------------------- the papers' augmented SGD linear probe


@dataclass(frozen=True)
class SGDProbe:
    """An SGD linear probe on frozen features of augmented views, cosine schedule (docs/methods.md §1.6, §2.5, §3.5)."""

    lr: float
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    batch: int = 256
    final_lr: float = 0.0  # the cosine schedule's end value
    source: str = ""  # whose protocol


# Per method, the learning rate of its paper's probe: E-SSL (also SimCLR and the references), EquiMod, CLeVER
# (0.001 x batch / 256). Views: RandomResizedCrop(scale 0.08-1) + flip.
SGD_PROBES: dict[str, SGDProbe] = {
    "essl": SGDProbe(lr=30.0, source="E-SSL cifar10/main.py eval_loop: lr 30, momentum 0.9, wd 0, cosine"),
    "equimod": SGDProbe(
        lr=0.2, nesterov=True, final_lr=1e-4, source="EquiMod linear_eval: nesterov lr 0.2, cosine to 1e-4"
    ),
    "clever": SGDProbe(
        lr=0.001, source="CLeVER eval_linear.py: lr 0.001 x bs/256, momentum 0.9, wd 0, cosine"
    ),
}


def sgd_probe_for(method: str | None) -> SGDProbe:
    """The paper probe of ``method`` (E-SSL's for SimCLR, rotation, none and unknown methods)."""
    return SGD_PROBES.get(str(method), SGD_PROBES["essl"])


def train_sgd_probes(
    epoch_batches, dims: dict[str, int], n_classes: int, probe: SGDProbe, epochs: int, seed: int = 0
) -> dict[str, torch.nn.Linear]:
    """One linear classifier per space, trained jointly by SGD on the batches ``epoch_batches(epoch)`` yields:
    ``({space: features [B, D]}, labels [B])`` (fresh augmented views each epoch). Cosine lr per step."""
    torch.manual_seed(seed)
    heads = {s: torch.nn.Linear(d, n_classes) for s, d in dims.items()}
    params = [p for h in heads.values() for p in h.parameters()]
    opt = torch.optim.SGD(
        params, lr=probe.lr, momentum=probe.momentum, nesterov=probe.nesterov, weight_decay=probe.weight_decay
    )
    step, total = 0, None
    for epoch in range(epochs):
        for feats, y in epoch_batches(epoch):
            if total is None:
                total = max(1, epochs * max(1, getattr(epoch_batches, "n_batches", 1)))
            t = min(step / total, 1.0)
            for gr in opt.param_groups:
                gr["lr"] = probe.final_lr + 0.5 * (probe.lr - probe.final_lr) * (1 + np.cos(np.pi * t))
            opt.zero_grad(set_to_none=True)
            loss = sum(torch.nn.functional.cross_entropy(heads[s](feats[s].float()), y) for s in heads)
            loss.backward()
            opt.step()
            step += 1
    return heads


def probe_accuracy(head: torch.nn.Linear, x: np.ndarray, y: np.ndarray, batch: int = 4096) -> float:
    """Accuracy of a trained linear ``head`` on features ``x`` [N, D] with labels ``y``."""
    correct = 0
    with torch.no_grad():
        for s in range(0, len(x), batch):
            out = head(torch.as_tensor(np.array(x[s : s + batch]), dtype=torch.float32))
            correct += int((out.argmax(1).numpy() == np.asarray(y[s : s + batch])).sum())
    return correct / max(len(x), 1)
