"""Pure loss functions: tensors and floats in, a scalar tensor out.

Similarities are computed in float32 even under bf16 autocast (the logits of a contrastive loss need the
mantissa).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

Gather = Callable[[Tensor], tuple[Tensor, int]]
"""How a contrastive loss sees the other ranks: ``x [n, D]`` -> ``(rows of every rank concatenated [M, D],
offset of this rank's rows among them)``, keeping gradients to every rank's input. The trainer passes
``engine.core.distributed.gather_rows`` under DDP; the loss never reads process-group state itself."""


def local(x: Tensor) -> tuple[Tensor, int]:
    """The single-process :data:`Gather`: this rank's rows are all the rows, at offset 0."""
    return x, 0


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5, gather: Gather = local) -> Tensor:
    """SimCLR's 2N-way NT-Xent: each of the 2N embeddings must pick its other view among the 2N-1 others.

    Args:
        z1, z2: ``[N, D]`` embeddings of two views (row i of both = same source image).
        temperature: softmax temperature tau.
        gather: where the keys come from (:data:`Gather`): :func:`local` contrasts within this batch; under
            DDP the local 2N queries are contrasted against keys gathered from every rank.
    Returns: mean loss over the local 2N rows.
    """
    q1, q2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    (k1, offset), (k2, _) = gather(q1), gather(q2)
    return nt_xent_keys(q1, q2, k1, k2, offset, temperature)


def nt_xent_keys(q1: Tensor, q2: Tensor, k1: Tensor, k2: Tensor, offset: int, temperature: float) -> Tensor:
    """NT-Xent of local L2-normalised queries ``q1, q2 [n, D]`` against keys ``k1, k2 [M, D]`` (all ranks'
    views, this rank's rows at ``offset``): the positive of ``q1[i]`` is ``k2[offset+i]``, its own copy
    ``k1[offset+i]`` is masked out, and symmetrically for ``q2``. With ``k = q`` and offset 0 it is plain
    2N-way NT-Xent; averaged over ranks it equals NT-Xent of the global batch."""
    n, n_all = q1.shape[0], k1.shape[0]
    queries = torch.cat([q1, q2]).float()  # [2n, D]
    keys = torch.cat([k1, k2]).float()  # [2M, D]
    with torch.autocast(q1.device.type, enabled=False):  # autocast would run this matmul in bf16
        logits = queries @ keys.T / temperature  # [2n, 2M]
    local = torch.arange(n, device=q1.device) + offset
    self_idx = torch.cat([local, local + n_all])  # where each query sits among the keys
    pos_idx = torch.cat([local + n_all, local])  # its other view
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(2 * n, device=q1.device), self_idx] = True
    return F.cross_entropy(logits.masked_fill(self_mask, float("-inf")), pos_idx)


def equimod_loss(y_t: Tensor, y_hat_t: Tensor, temperature: float = 0.2, gather: Gather = local) -> Tensor:
    """EquiMod's L_equi (docs/methods.md §2.1): NT-Xent over the 4N set ``[y_t; y_hat_t]``.

    ``y_t``/``y_hat_t``: ``[2N, D]`` actual and predicted embeddings of both augmented views. The positive of
    ``y_hat_t[i]`` is ``y_t[i]`` (and vice versa); every other element is a negative, *including* the actual
    and predicted embeddings of the same source image's other view. This is what EquiMod's code does
    (``all_y = cat([yt, yt_hat])`` into its NTXentLoss) and we keep it for fidelity.
    """
    return nt_xent(y_t, y_hat_t, temperature, gather=gather)


def rotation_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the 4-way rotation prediction (E-SSL §1.1), in float32."""
    return F.cross_entropy(logits.float(), labels)


def separation_loss(ef_a: Tensor, ef_b: Tensor) -> Tensor:
    """CLeVER's L_DVR/L_aug (§3.2-3.3): ``|mean_i cos(ef_a[i], sg ef_b[i])|``.

    Pushes the equivariant-factor embeddings of two views of an image towards orthogonality. The stop-gradient
    on ``ef_b`` follows DDCL's ``cos(p1, sg z2)``; callers symmetrise by passing ``cat[e1, e2]`` and
    ``cat[e2, e1]``, which gives DDCL's ``|(cos(e1, sg e2) + cos(e2, sg e1)) / 2|``.
    """
    return F.cosine_similarity(ef_a.float(), ef_b.detach().float(), dim=1).mean().abs()


def head_norm_gap(params_a: Iterable[Tensor], params_b: Iterable[Tensor]) -> Tensor:
    """CLeVER's L_PReg (§3.2): ``|sum ||theta_a||^2 - sum ||theta_b||^2|`` over two heads' parameters."""
    sq_a = sum(p.float().pow(2).sum() for p in params_a)
    sq_b = sum(p.float().pow(2).sum() for p in params_b)
    return torch.as_tensor(sq_a - sq_b).abs()
