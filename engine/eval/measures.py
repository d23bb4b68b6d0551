"""Measures of invariance and equivariance, each with the baseline that makes it readable (docs/measures.md).

Arrays in, small frozen results out; no I/O. Every result carries ``reason``: empty when its numbers are
defined, else one line saying why they are NaN (e.g. the embedding ignores the augmentation).

- :func:`invariance`: relative invariance ``1 - E|s(a(x)) - s(x)|^2 / E|s(x) - s(x')|^2`` and the centred cosine,
  beside the centred cosine between different images (``x'`` paired by a seeded derangement).
- :func:`displacement_report`: how well a predictor (the model's own, or a post-hoc ridge) predicts the
  displacement ``delta = e(a(x)) - e(x)``, beside a mean-displacement guess, parameter-only, image-only and
  shuffled-parameter baselines; the gain over the strongest; image dependence; retrieval (MRR, Hit@k).
- :func:`linear_cka`: similarity of two models' embeddings of the same items.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields

import numpy as np

from engine.augment import FAMILIES, equimod_vector
from engine.eval.metrics import ridge_fit, row_cos

NAN = float("nan")
ZERO_TOL = 1e-6  # a displacement (or spread) below this fraction of the embeddings' RMS norm counts as zero
METHOD = "method"
BASELINES: tuple[str, ...] = ("mean_delta", "params_only", "image_only", "shuffled_params")
PREDICTORS: tuple[str, ...] = (METHOD, *BASELINES)

ModelPredictor = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (z0 [N, D], raw p [N, P]) -> zt_hat [N, D]
Label = Hashable  # (family, strength) of a one-family view, or None for a composed recipe view


def _flat(obj: object, prefix: str = "") -> dict[str, float | str]:
    """Fields of a frozen result as ``{prefix + name: value}`` (floats and strings only)."""
    out: dict[str, float | str] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, str):
            out[prefix + f.name] = v
        elif isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool):
            out[prefix + f.name] = float(v)
    return out


def _f64(a: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(a, np.float64))


def zero_tol(*arrays: np.ndarray) -> float:
    """Absolute tolerance below which a vector counts as zero: ZERO_TOL x the largest RMS row norm."""
    rms = max(float(np.sqrt((a**2).sum(axis=1).mean())) if a.size else 0.0 for a in arrays)
    return ZERO_TOL * rms


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A seeded permutation of ``range(n)`` with no fixed point (one random cycle through all items; n >= 2)."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)
    return out


# ---------------------------------------------------------------- relative invariance


@dataclass(frozen=True, eq=False)
class Reference:
    """Statistics of clean embeddings e(x) that invariance is measured against (centre, one global scale)."""

    mean: np.ndarray  # [D]
    scale: float  # RMS norm of the centred clean embeddings (sqrt of their total variance)
    between_sq: float  # E|s(x) - s(x')|^2 over deranged pairs, in standardised units (about 2)
    between_cos: float  # mean cos(e(x) - mean, e(x') - mean): the baseline of the centred cosine
    n: int
    reason: str = ""


def fit_reference(z_clean: np.ndarray, seed: int = 0) -> Reference:
    """:class:`Reference` of clean embeddings ``z_clean`` [N, D]; undefined for N < 2 or identical rows."""
    z = _f64(z_clean)
    n, mean = len(z), z.mean(axis=0)
    if n < 2:
        return Reference(mean, NAN, NAN, NAN, n, "needs at least 2 images to compare different images")
    c = z - mean
    scale = float(np.sqrt((c**2).sum(axis=1).mean()))
    if scale <= ZERO_TOL * max(float(np.linalg.norm(mean)), 1e-300):
        return Reference(mean, NAN, NAN, NAN, n, "the clean embedding is the same for every image")
    other = derangement(n, seed)
    s = c / scale
    between_sq = float(((s - s[other]) ** 2).sum(axis=1).mean())
    return Reference(mean, scale, between_sq, float(row_cos(c, c[other]).mean()), n)


@dataclass(frozen=True)
class Invariance:
    """Relative invariance of views, with the between-image baseline (1: a view is the image itself)."""

    invariance: float  # 1 - view_sq / between_sq; 0 = a view is as far as another image; may be < 0
    centred_cos: float  # mean cos(e(a(x)) - mean, e(x) - mean)
    between_cos: float  # mean cos(e(x) - mean, e(x') - mean): what centred_cos is for different images
    raw_cos: float  # mean uncentred cos(e(a(x)), e(x)): the old measure, near 1 for non-negative features
    view_sq: float  # E|s(a(x)) - s(x)|^2, standardised
    between_sq: float  # E|s(x) - s(x')|^2, standardised
    n: int
    reason: str = ""

    def as_dict(self, prefix: str = "") -> dict[str, float | str]:
        return _flat(self, prefix)


def item_invariance(z0: np.ndarray, zt: np.ndarray, ref: Reference) -> np.ndarray:
    """Per-item relative invariance ``1 - |s(a(x)) - s(x)|^2 / between_sq`` (its mean is :func:`invariance`)."""
    d = (_f64(zt) - _f64(z0)) / ref.scale
    return 1.0 - (d**2).sum(axis=1) / ref.between_sq


def item_centred_cos(z0: np.ndarray, zt: np.ndarray, ref: Reference) -> np.ndarray:
    """Per-item ``cos(e(a(x)) - mean, e(x) - mean)``; compare with ``ref.between_cos``."""
    return row_cos(_f64(zt) - ref.mean, _f64(z0) - ref.mean)


def invariance(z0: np.ndarray, zt: np.ndarray, ref: Reference | None = None, seed: int = 0) -> Invariance:
    """Relative invariance of views ``zt`` = e(a(x)) of clean ``z0`` = e(x) (rows match; [N, D]).

    ``ref`` defaults to :func:`fit_reference` of ``z0`` (pass a store's reference to score a few views).
    """
    z0, zt = _f64(z0), _f64(zt)
    if z0.shape != zt.shape:
        raise ValueError(f"clean and view embeddings differ in shape: {z0.shape} vs {zt.shape}")
    ref = fit_reference(z0, seed) if ref is None else ref
    raw = float(row_cos(zt, z0).mean()) if len(z0) else NAN
    if ref.reason:
        return Invariance(NAN, NAN, NAN, raw, NAN, NAN, len(z0), ref.reason)
    view_sq = float((((zt - z0) / ref.scale) ** 2).sum(axis=1).mean())
    return Invariance(
        invariance=1.0 - view_sq / ref.between_sq,
        centred_cos=float(item_centred_cos(z0, zt, ref).mean()),
        between_cos=ref.between_cos,
        raw_cos=raw,
        view_sq=view_sq,
        between_sq=ref.between_sq,
        n=len(z0),
    )


# ---------------------------------------------------------------- which sweep families the 15-d vector encodes


@functools.cache
def not_encoded_families() -> frozenset[str]:
    """Sweep families whose every strength leaves EquiMod's 15-d vector at its identity value (blur, rotation)."""
    hw = (32, 32)

    def vec(fam, s: float) -> np.ndarray:
        return equimod_vector(fam.params(s, 1, hw, hw[0]), hw).numpy()

    return frozenset(
        name
        for name, fam in FAMILIES.items()
        if all(np.array_equal(vec(fam, s), vec(fam, fam.neutral)) for s in fam.sweep)
    )


def label_family(label: Label) -> str | None:
    """The family of a group label ``(family, strength)`` (or a bare family name); None for recipe views."""
    if label is None:
        return None
    return str(label[0]) if isinstance(label, tuple) and label else str(label)


# ---------------------------------------------------------------- displacement predictors


@dataclass(frozen=True, eq=False)
class Views:
    """Clean and augmented embeddings of N items with their parameter vectors and optional group labels."""

    z0: np.ndarray  # [N, D] e(x)
    zt: np.ndarray  # [N, D] e(a(x))
    p: np.ndarray  # [N, P] raw parameter vectors (EquiMod's 15-d layout)
    groups: tuple[Label, ...] | None = None  # N labels (family, strength), or None: composed recipe views

    def __post_init__(self) -> None:
        z0, zt, p = _f64(self.z0), _f64(self.zt), _f64(self.p)
        if z0.shape != zt.shape or len(p) != len(z0):
            raise ValueError(f"views disagree in shape: z0 {z0.shape}, zt {zt.shape}, p {p.shape}")
        groups = None if self.groups is None else tuple(self.groups)
        if groups is not None and len(groups) != len(z0):
            raise ValueError(f"{len(groups)} group labels for {len(z0)} views")
        for k, v in (("z0", z0), ("zt", zt), ("p", p), ("groups", groups)):
            object.__setattr__(self, k, v)

    def __len__(self) -> int:
        return len(self.z0)

    @property
    def delta(self) -> np.ndarray:
        return self.zt - self.z0

    def labels(self) -> tuple[Label, ...]:
        return self.groups if self.groups is not None else (None,) * len(self)

    def take(self, rows: np.ndarray) -> Views:
        labels = self.labels()
        groups = None if self.groups is None else tuple(labels[i] for i in rows)
        return Views(self.z0[rows], self.zt[rows], self.p[rows], groups)


def encoded_rows(views: Views, not_encoded: frozenset[str]) -> np.ndarray:
    """Boolean mask of the views whose family the parameter vector encodes (recipe views always are)."""
    return np.array([label_family(g) not in not_encoded for g in views.labels()], dtype=bool)


@dataclass(frozen=True, eq=False)
class RidgeDelta:
    """Closed-form ridge predictor of delta from standardised features of (z0, p).

    ``kind``: ``full`` = [z0, p, (P (z0 - c)) (x) p] (the post-hoc predictor; P = top PCA axes of z0),
    ``params`` = p alone, ``image`` = z0 alone.
    """

    kind: str
    w: np.ndarray
    b: np.ndarray
    f_mean: np.ndarray
    f_std: np.ndarray
    p_mean: np.ndarray
    p_std: np.ndarray
    z_mean: np.ndarray
    z_axes: np.ndarray  # [rank, D]

    def features(self, z0: np.ndarray, p: np.ndarray) -> np.ndarray:
        z0, p = _f64(z0), (_f64(p) - self.p_mean) / self.p_std
        if self.kind == "params":
            return p
        if self.kind == "image":
            return z0
        r = (z0 - self.z_mean) @ self.z_axes.T
        return np.concatenate([z0, p, (r[:, :, None] * p[:, None, :]).reshape(len(z0), -1)], axis=1)

    def __call__(self, z0: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Predicted displacement delta_hat [N, D]."""
        return ((self.features(z0, p) - self.f_mean) / self.f_std) @ self.w + self.b


def _safe_std(x: np.ndarray) -> np.ndarray:
    s = x.std(axis=0)
    return np.where(s > 1e-12 * (1.0 + np.abs(x.mean(axis=0))), s, 1.0)  # constant columns carry no signal


def principal_axes(x: np.ndarray, k: int) -> np.ndarray:
    """The top ``k`` right singular vectors [k, D] of ``x`` [N, D] (rows of ``Vt``, largest first).

    LAPACK's divide-and-conquer SVD (numpy's) can fail to converge on finite, rank-deficient matrices, e.g. the
    features of a randomly initialised ResNet, where many ReLU units are dead; the eigenvectors of ``x.T @ x``
    are the same axes (up to sign), so they are the answer when it does."""
    x = np.asarray(x, dtype=np.float64)
    if k <= 0:
        return np.zeros((0, x.shape[1]))
    try:
        return np.linalg.svd(x, full_matrices=False)[2][:k]
    except np.linalg.LinAlgError:
        return gram_axes(x, k)


def gram_axes(x: np.ndarray, k: int) -> np.ndarray:
    """:func:`principal_axes` from the eigenvectors of ``x.T @ x`` (largest eigenvalue first)."""
    x = np.asarray(x, dtype=np.float64)
    _, vecs = np.linalg.eigh(x.T @ x)
    return vecs[:, ::-1][:, :k].T.copy()


def fit_ridge(kind: str, views: Views, alpha: float = 10.0, rank: int = 16) -> RidgeDelta:
    """Fit a :class:`RidgeDelta` of ``kind`` (full, params, image) on ``views`` (delta = zt - z0)."""
    if kind not in ("full", "params", "image"):
        raise ValueError(f"unknown ridge kind {kind!r}; choose from full, params, image")
    z0, p = views.z0, views.p
    z_mean = z0.mean(axis=0)
    k = max(0, min(rank, z0.shape[1], len(z0) - 1))
    axes = principal_axes(z0 - z_mean, k)
    shell = RidgeDelta(kind, *(np.zeros(0),) * 4, p.mean(axis=0), _safe_std(p), z_mean, axes)
    f = shell.features(z0, p)
    fm, fs = f.mean(axis=0), _safe_std(f)
    w, b = ridge_fit((f - fm) / fs, views.delta, alpha=alpha)
    return RidgeDelta(kind, w, b, fm, fs, shell.p_mean, shell.p_std, z_mean, axes)


@dataclass(frozen=True, eq=False)
class Predictors:
    """The method's displacement predictor and the four baselines, fitted on one split (see :func:`fit_predictors`)."""

    method: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (z0, p) -> delta_hat
    method_kind: str  # "model" (the model's own predictor) or "post-hoc" (ridge on [z0, p, interaction])
    params_only: RidgeDelta
    image_only: RidgeDelta
    group_means: dict[Label, np.ndarray]  # mean delta per (family, strength) of the fit split
    overall_mean: np.ndarray  # mean delta of the fit split's encoded views (for unseen groups)

    def mean_delta(self, labels: Sequence[Label]) -> np.ndarray:
        """The fit split's mean displacement of each label's group (the overall mean for unseen or None)."""
        rows = [self.group_means.get(g, self.overall_mean) for g in labels]
        return np.stack(rows) if rows else np.zeros((0, len(self.overall_mean)))

    def predict(
        self,
        z0: np.ndarray,
        p: np.ndarray,
        groups: Sequence[Label] | None = None,
        shuffle: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """``{name: delta_hat [N, D]}`` for :data:`PREDICTORS`. ``shuffled_params`` feeds the method's predictor
        the parameters of row ``shuffle[i]`` (default: a derangement with seed 0); absent for N < 2."""
        z0, p = _f64(z0), _f64(p)
        labels = (None,) * len(z0) if groups is None else tuple(groups)
        out = {
            METHOD: self.method(z0, p),
            "mean_delta": self.mean_delta(labels),
            "params_only": self.params_only(z0, p),
            "image_only": self.image_only(z0, p),
        }
        if shuffle is None and len(z0) >= 2:
            shuffle = derangement(len(z0))
        if shuffle is not None:
            out["shuffled_params"] = self.method(z0, p[shuffle])
        return out


def model_delta(predictor: ModelPredictor) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Wrap a model's ``(z0, p) -> zt_hat`` as a displacement predictor ``(z0, p) -> zt_hat - z0``."""
    return lambda z0, p: _f64(predictor(z0, p)) - _f64(z0)


def fit_predictors(
    fit: Views,
    predictor: ModelPredictor | None = None,
    not_encoded: frozenset[str] | None = None,
    alpha: float = 10.0,
    rank: int = 16,
) -> Predictors:
    """Fit the baselines (and the post-hoc predictor when no model ``predictor`` is given) on ``fit``.

    Ridges are fitted on the views whose family the parameter vector encodes; group means on all views.
    """
    not_encoded = not_encoded_families() if not_encoded is None else not_encoded
    enc = fit.take(np.flatnonzero(encoded_rows(fit, not_encoded)))
    if len(enc) < 2:
        raise ValueError("the fit split needs at least 2 views of families the parameter vector encodes")
    sums: dict[Label, list[np.ndarray]] = defaultdict(list)
    for g, d in zip(fit.labels(), fit.delta, strict=True):
        if g is not None:
            sums[g].append(d)
    return Predictors(
        method=model_delta(predictor) if predictor is not None else fit_ridge("full", enc, alpha, rank),
        method_kind="model" if predictor is not None else "post-hoc",
        params_only=fit_ridge("params", enc, alpha, rank),
        image_only=fit_ridge("image", enc, alpha, rank),
        group_means={g: np.mean(v, axis=0) for g, v in sums.items()},
        overall_mean=enc.delta.mean(axis=0),
    )


# ---------------------------------------------------------------- scores


@dataclass(frozen=True)
class Scores:
    """How well delta_hat matches the actual displacement delta over N views."""

    cos: float  # mean cos(delta, delta_hat) over views whose delta is not zero
    r2: float  # 1 - sum |delta - delta_hat|^2 / sum |delta - mean delta|^2 (pooled reference, see score_delta)
    n: int
    reason: str = ""

    def as_dict(self, prefix: str = "") -> dict[str, float | str]:
        return _flat(self, prefix)


def score_delta(
    delta: np.ndarray, delta_hat: np.ndarray, var: float | None = None, tol: float = 0.0
) -> Scores:
    """:class:`Scores` of ``delta_hat`` against ``delta`` ([N, D]).

    ``var``: the per-view variance ``mean |delta - mean delta|^2`` that R^2 divides by (default: of ``delta``;
    pass the pooled value to score a group so the overall R^2 is the view-weighted mean of the groups').
    ``tol``: norms at or below it count as zero.
    """
    delta, delta_hat = _f64(delta), _f64(delta_hat)
    n = len(delta)
    moving = np.linalg.norm(delta, axis=1) > tol
    if n == 0 or not moving.any():
        return Scores(NAN, NAN, n, "the actual displacement is zero: the embedding ignores this augmentation")
    var = float(((delta - delta.mean(axis=0)) ** 2).sum(axis=1).mean()) if var is None else var
    cos = float(row_cos(delta[moving], delta_hat[moving]).mean())
    if not var > tol**2:
        return Scores(
            cos, NAN, n, "the actual displacement is the same for every view: no variance to explain"
        )
    return Scores(cos, 1.0 - float(((delta - delta_hat) ** 2).sum(axis=1).mean()) / var, n)


@dataclass(frozen=True)
class Gain:
    """The method's score minus its strongest baseline's (> 0: the method beats every model-free guess)."""

    cos: float
    r2: float
    strongest_cos: str  # the baseline with the highest cos
    strongest_r2: str

    def as_dict(self, prefix: str = "") -> dict[str, float | str]:
        return _flat(self, prefix)


def gain(scores: dict[str, Scores]) -> Gain:
    """:class:`Gain` of ``scores[METHOD]`` over the best of the baselines present (NaN where undefined)."""

    def best(key: str) -> tuple[float, str]:
        vals = [(getattr(scores[b], key), b) for b in BASELINES if b in scores]
        vals = [(v, b) for v, b in vals if np.isfinite(v)]
        if not vals or not np.isfinite(getattr(scores[METHOD], key)):
            return NAN, ""
        v, b = max(vals)
        return getattr(scores[METHOD], key) - v, b

    (gc, bc), (gr, br) = best("cos"), best("r2")
    return Gain(gc, gr, bc, br)


@dataclass(frozen=True)
class ImageDependence:
    """How much the displacement changes across images at fixed parameters: actual vs predicted."""

    actual_share: float  # within-group variance of delta / its total variance (0: delta ignores the image)
    predicted_share: float  # the same for delta_hat
    ratio: float  # within-group variance of delta_hat / that of delta (0: the predictor ignores the image)
    n_groups: int  # groups of fixed parameters with >= 2 views
    reason: str = ""

    def as_dict(self, prefix: str = "") -> dict[str, float | str]:
        return _flat(self, prefix)


def _within(x: np.ndarray, labels: Sequence[Label]) -> tuple[float, int]:
    """(sum over groups of sum |x - group mean|^2, number of groups with >= 2 rows); None labels are skipped."""
    rows: dict[Label, list[int]] = defaultdict(list)
    for i, g in enumerate(labels):
        if g is not None:
            rows[g].append(i)
    total, k = 0.0, 0
    for idx in rows.values():
        if len(idx) >= 2:
            x_g = x[idx]
            total += float(((x_g - x_g.mean(axis=0)) ** 2).sum())
            k += 1
    return total, k


def image_dependence(
    delta: np.ndarray,
    delta_hat: np.ndarray,
    labels: Sequence[Label] | None,
    totals: tuple[float, float] | None = None,
    tol: float = 0.0,
) -> ImageDependence:
    """:class:`ImageDependence` of ``delta_hat`` vs ``delta`` within the groups of ``labels`` (fixed parameters).

    ``totals``: (sum |delta - mean|^2, sum |delta_hat - mean|^2) to divide by (default: of these rows).
    """
    delta, delta_hat = _f64(delta), _f64(delta_hat)
    if labels is None:
        return ImageDependence(NAN, NAN, NAN, 0, "no groups of fixed parameters (composed recipe views)")
    w_act, k = _within(delta, labels)
    w_pred, _ = _within(delta_hat, labels)
    if k == 0:
        return ImageDependence(NAN, NAN, NAN, 0, "no group of fixed parameters has 2 or more images")
    if totals is None:
        totals = tuple(float(((x - x.mean(axis=0)) ** 2).sum()) for x in (delta, delta_hat))
    t_act, t_pred = totals
    eps = tol**2 * len(delta)
    if not t_act > eps:
        return ImageDependence(
            NAN, NAN, NAN, k, "the actual displacement does not vary: nothing to depend on"
        )
    share = w_act / t_act
    pred_share = w_pred / t_pred if t_pred > eps else NAN
    if not w_act > eps:
        reason = "the actual displacement does not vary across images at fixed parameters: no ratio"
        return ImageDependence(share, pred_share, NAN, k, reason)
    return ImageDependence(share, pred_share, w_pred / w_act, k)


@dataclass(frozen=True)
class Retrieval:
    """Rank of the actual view among all candidates' actual views, from the predicted view (cosine)."""

    mrr: float  # mean of 1 / rank
    hit1: float  # fraction ranked first
    hit5: float  # fraction ranked in the top 5
    chance_mrr: float  # the same for a random ranking: H_N / N
    chance_hit1: float  # 1 / N
    chance_hit5: float  # min(5, N) / N
    n: int
    reason: str = ""

    def as_dict(self, prefix: str = "") -> dict[str, float | str]:
        return _flat(self, prefix)


def retrieval(zt: np.ndarray, zt_hat: np.ndarray, chunk: int = 1024) -> Retrieval:
    """Rank each prediction ``zt_hat[i]`` against every actual view ``zt`` by cosine (SIE's MRR, Hit@1, Hit@5).

    A tie with another candidate counts against the prediction (rank = 1 + candidates at least as similar).
    """
    zt, zt_hat = _f64(zt), _f64(zt_hat)
    n = len(zt)
    if n < 2:
        return _chance_retrieval(n, "needs at least 2 views to rank")
    a = zt / np.maximum(np.linalg.norm(zt, axis=1, keepdims=True), 1e-300)
    q = zt_hat / np.maximum(np.linalg.norm(zt_hat, axis=1, keepdims=True), 1e-300)
    ranks = np.empty(n)
    for s in range(0, n, chunk):
        sim = q[s : s + chunk] @ a.T  # [c, N]
        own = sim[np.arange(len(sim)), np.arange(s, s + len(sim))]
        ranks[s : s + chunk] = (sim >= own[:, None]).sum(axis=1)  # includes itself
    chance = _chance_retrieval(n, "")
    return Retrieval(
        float((1.0 / ranks).mean()),
        float((ranks <= 1).mean()),
        float((ranks <= 5).mean()),
        chance.chance_mrr,
        chance.chance_hit1,
        chance.chance_hit5,
        n,
    )


# ---------------------------------------------------------------- the displacement report


@dataclass(frozen=True)
class GroupReport:
    """Displacement scores of one (family, strength) group of the test split."""

    label: Label
    encoded: (
        bool  # False: the parameter vector cannot encode this family (predictors see the identity vector)
    )
    n: int
    scores: dict[str, Scores]
    gain: Gain
    image: ImageDependence

    def as_dict(self) -> dict[str, float | str]:
        """Flat ``{"encoded": 1.0, "n": ..., "<predictor>/cos": ..., "gain/cos": ..., "image/ratio": ...}``."""
        out: dict[str, float | str] = {"encoded": float(self.encoded), "n": float(self.n)}
        for name, s in self.scores.items():
            out.update(s.as_dict(f"{name}/"))
        out.update(self.gain.as_dict("gain/"))
        out.update(self.image.as_dict("image/"))
        return out


@dataclass(frozen=True)
class DisplacementReport:
    """Displacement prediction of one space: the method beside its baselines, overall and per group."""

    method: str  # "model" or "post-hoc"
    scores: dict[str, Scores]  # PREDICTORS -> Scores over the encoded test views
    retrieval: dict[str, Retrieval]
    gain: Gain
    image: ImageDependence  # of the method's predictor
    groups: tuple[GroupReport, ...]
    n: int  # encoded test views (the overall scores' rows)
    n_not_encoded: int
    reason: str = ""

    def as_dict(self) -> dict[str, float | str]:
        """Flat ``{"<predictor>/cos": ..., "retrieval/<predictor>/mrr": ..., "gain/cos": ...}`` of the overall."""
        out: dict[str, float | str] = {"method": self.method, "n": float(self.n), "reason": self.reason}
        out["n_not_encoded"] = float(self.n_not_encoded)
        for name, s in self.scores.items():
            out.update(s.as_dict(f"{name}/"))
        for name, r in self.retrieval.items():
            out.update(r.as_dict(f"retrieval/{name}/"))
        out.update(self.gain.as_dict("gain/"))
        out.update(self.image.as_dict("image/"))
        return out


def _chance_retrieval(n: int, reason: str) -> Retrieval:
    chance = (float((1.0 / np.arange(1, n + 1)).sum() / n), 1.0 / n, min(5, n) / n) if n else (NAN,) * 3
    return Retrieval(NAN, NAN, NAN, *chance, n, reason)


def _shuffle_within(mask: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of all rows that deranges the rows of ``mask`` among themselves, and the others likewise."""
    perm = np.arange(len(mask))
    for part in (np.flatnonzero(mask), np.flatnonzero(~mask)):
        if len(part) >= 2:
            perm[part] = part[derangement(len(part), seed)]
    return perm


def displacement_report(
    fit: Views,
    test: Views,
    predictor: ModelPredictor | None = None,
    not_encoded: frozenset[str] | None = None,
    seed: int = 0,
    alpha: float = 10.0,
    rank: int = 16,
) -> DisplacementReport:
    """Score the displacement predictor of one space on ``test`` beside its baselines fitted on ``fit``.

    ``predictor``: the model's own ``(z0, raw p) -> zt_hat`` (EquiMod); None fits the post-hoc ridge.
    ``not_encoded``: families the parameter vector cannot encode (default :func:`not_encoded_families`); their
    groups are reported with ``encoded=False`` and left out of the overall scores and of every ridge fit.
    The shuffled control deranges parameters among the encoded test views (seeded by ``seed``).
    """
    not_encoded = not_encoded_families() if not_encoded is None else not_encoded
    fitted = fit_predictors(fit, predictor, not_encoded, alpha, rank)
    mask = encoded_rows(test, not_encoded)
    preds = fitted.predict(test.z0, test.p, test.groups, _shuffle_within(mask, seed))
    tol = zero_tol(test.z0, test.zt)
    delta, enc = test.delta[mask], np.flatnonzero(mask)
    labels = None if test.groups is None else tuple(test.groups[i] for i in enc)
    n, n_not = len(enc), int((~mask).sum())
    var = float(((delta - delta.mean(axis=0)) ** 2).sum(axis=1).mean()) if n else 0.0
    scores = {k: score_delta(delta, dh[mask], var, tol) for k, dh in preds.items()}
    reason = scores[METHOD].reason if n else "no test view of a family the parameter vector encodes"
    if n == 0 or not (np.linalg.norm(delta, axis=1) > tol).any():  # nothing moves: every score is undefined
        scores = {k: Scores(NAN, NAN, n, reason) for k in preds}
        retr = {k: _chance_retrieval(n, reason) for k in preds}
        image = ImageDependence(NAN, NAN, NAN, 0, reason)
    else:
        retr = {k: retrieval(test.zt[mask], test.z0[mask] + dh[mask]) for k, dh in preds.items()}
        image = image_dependence(delta, preds[METHOD][mask], labels, tol=tol)
    method = preds[METHOD][mask]
    totals = (var * n, float(((method - method.mean(axis=0)) ** 2).sum()) if n else 0.0)
    groups = _group_reports(test, preds, mask, var, totals, tol)
    return DisplacementReport(fitted.method_kind, scores, retr, gain(scores), image, groups, n, n_not, reason)


def _group_reports(
    test: Views,
    preds: dict[str, np.ndarray],
    mask: np.ndarray,
    var: float,
    totals: tuple[float, float],
    tol: float,
) -> tuple[GroupReport, ...]:
    """One :class:`GroupReport` per non-None label, in first-seen order (R^2 and shares use pooled totals)."""
    rows: dict[Label, list[int]] = defaultdict(list)
    for i, g in enumerate(test.labels()):
        if g is not None:
            rows[g].append(i)
    delta, out = test.delta, []
    for g, idx in rows.items():
        d = delta[idx]
        scores = {k: score_delta(d, dh[idx], var if var > 0 else None, tol) for k, dh in preds.items()}
        if not (np.linalg.norm(d, axis=1) > tol).any():
            scores = {k: Scores(NAN, NAN, len(idx), scores[METHOD].reason) for k in preds}
        image = image_dependence(d, preds[METHOD][idx], (g,) * len(idx), totals, tol)
        out.append(GroupReport(g, bool(mask[idx[0]]), len(idx), scores, gain(scores), image))
    return tuple(out)


# ---------------------------------------------------------------- comparing two models


@dataclass(frozen=True)
class Cka:
    """Linear centred kernel alignment of two embeddings of the same items (1: equal up to rotation and scale)."""

    value: float
    debiased: bool
    n: int
    reason: str = ""

    def as_dict(self, prefix: str = "") -> dict[str, float | str]:
        return _flat(self, prefix)


def linear_cka(x: np.ndarray, y: np.ndarray, debiased: bool = False) -> Cka:
    """Linear CKA (Kornblith et al. 2019) of ``x`` [N, Dx] and ``y`` [N, Dy] (rows are the same items).

    ``debiased``: use the unbiased HSIC estimator (Song et al. 2012), which removes the upward bias of small N
    against large D (independent embeddings then score about 0 instead of about D / (N + D)); needs N > 3.
    Computed in feature space (no N x N Gram matrix).
    """
    x, y = _f64(x), _f64(y)
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same items in both embeddings: {len(x)} vs {len(y)} rows")
    n = len(x)
    if n < (4 if debiased else 2):
        return Cka(NAN, debiased, n, f"needs at least {4 if debiased else 2} items")
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    hsic = _hsic_u if debiased else _hsic
    xx, yy = hsic(x, x), hsic(y, y)
    if not (xx > 0 and yy > 0):
        return Cka(NAN, debiased, n, "an embedding is the same for every item")
    return Cka(float(hsic(x, y) / np.sqrt(xx * yy)), debiased, n)


def _hsic(x: np.ndarray, y: np.ndarray) -> float:
    """|Y^T X|_F^2 of centred features (the biased HSIC up to a constant factor)."""
    return float(np.linalg.norm(y.T @ x) ** 2)


def _hsic_u(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased HSIC of linear kernels K = X X^T, L = Y Y^T (Song et al. 2012), in feature space."""
    n = len(x)
    kd, ld = (x**2).sum(axis=1), (y**2).sum(axis=1)  # Gram diagonals
    k1, l1 = x @ x.sum(axis=0) - kd, y @ y.sum(axis=0) - ld  # row sums of the zero-diagonal Grams
    tr = float(np.linalg.norm(y.T @ x) ** 2 - (kd * ld).sum())
    s = k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 * float(k1 @ l1) / (n - 2)
    return (tr + s) / (n * (n - 3))
