"""MLP heads described as data: a list of layer sizes plus norm choices (lightly-style builders).

The paper heads (docs/methods.md §1.2, §2.2, §8.1) are written for a 512-d ResNet-18; for narrow backbones
(width < 1) :func:`scaled_hidden` shrinks the hidden sizes proportionally to ``feat_dim`` (floor 128), so a
width-0.125 model (64-d features) gets 256-d hidden layers instead of 2048. Output sizes are never scaled.
"""

from __future__ import annotations

import itertools

from torch import nn

NORMS = ("bn", "ln", None)
LAST_NORMS = ("bn", "bn_noaffine", "ln", None)
PAPER_FEAT_DIM = 512  # the ResNet-18 feature size the paper head widths are quoted for


def _norm(kind: str | None, dim: int) -> nn.Module | None:
    return {
        "bn": lambda: nn.BatchNorm1d(dim),
        "bn_noaffine": lambda: nn.BatchNorm1d(dim, affine=False),
        "ln": lambda: nn.LayerNorm(dim),
        None: lambda: None,
    }[kind]()


def mlp(
    dims: list[int],
    norm: str | None = "bn",
    last_norm: str | None = None,
    bias: bool = False,
    last_bias: bool | None = None,
    act: bool = True,
) -> nn.Sequential:
    """``Linear -> norm -> ReLU`` for each hidden layer, then ``Linear -> last_norm``.

    Args:
        dims: layer sizes, input first (``[512, 2048, 128]`` = one hidden layer).
        norm: norm after each hidden Linear: "bn", "ln" or None.
        last_norm: norm after the output Linear: "bn", "bn_noaffine", "ln" or None.
        bias: bias of hidden Linears (False when a norm follows: the norm's shift makes it redundant).
        last_bias: bias of the output Linear (default: ``bias``).
        act: ReLU after hidden layers.
    """
    if len(dims) < 2 or any(int(d) < 1 for d in dims):
        raise ValueError(f"mlp dims must list >= 2 positive sizes, got {dims}")
    if norm not in NORMS or last_norm not in LAST_NORMS:
        raise ValueError(f"norm must be one of {NORMS}, last_norm one of {LAST_NORMS}")
    layers: list[nn.Module] = []
    for d_in, d_out in itertools.pairwise(dims[:-1]):
        layers.append(nn.Linear(d_in, d_out, bias=bias))
        if (n := _norm(norm, d_out)) is not None:
            layers.append(n)
        if act:
            layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Linear(dims[-2], dims[-1], bias=bias if last_bias is None else last_bias))
    if (n := _norm(last_norm, dims[-1])) is not None:
        layers.append(n)
    return nn.Sequential(*layers)


def scaled_hidden(hidden: tuple[int, ...], feat_dim: int) -> list[int]:
    """Hidden widths for a backbone of ``feat_dim``: paper sizes times ``min(1, feat_dim/512)``, at least 128."""
    factor = min(1.0, feat_dim / PAPER_FEAT_DIM)
    return [max(128, round(h * factor)) for h in hidden]


def projector(feat_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """SimCLR/EquiMod-style projector: Linear(no bias)-BN-ReLU per hidden layer, last BN(affine=False).

    Default (hidden (2048,), out 128) is §8.1's 512-2048-128; the final BN without affine is EquiMod's
    and E-SSL's choice (§1.2, §2.2) and keeps every projector output on the same scale.
    """
    return mlp([feat_dim, *scaled_hidden(hidden, feat_dim), out_dim], norm="bn", last_norm="bn_noaffine")


def rotation_head(feat_dim: int, hidden: tuple[int, ...], n_classes: int = 4) -> nn.Sequential:
    """E-SSL rotation head (§1.2): 512-2048(LN,ReLU)-2048(LN,ReLU)-4, biased Linears as in the code."""
    return mlp([feat_dim, *scaled_hidden(hidden, feat_dim), n_classes], norm="ln", bias=True)


def param_encoder(param_dim: int, out_dim: int = 128) -> nn.Sequential:
    """EquiMod parameter encoder e_p (§2.2): Linear(P->128, no bias) -> BN(affine), no ReLU."""
    return mlp([param_dim, out_dim], last_norm="bn")


def equimod_predictor(y_dim: int, p_dim: int) -> nn.Sequential:
    """EquiMod predictor u (§2.2, "one"): a single Linear(y+p -> y, no bias) -> BN(affine=False)."""
    return mlp([y_dim + p_dim, y_dim], last_norm="bn_noaffine")
