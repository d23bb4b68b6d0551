"""Loss functions against explicit-loop hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.methods.losses import (
    equimod_loss,
    head_norm_gap,
    local,
    nt_xent,
    nt_xent_keys,
    rotation_ce,
    separation_loss,
)


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _nt_xent_by_hand(rows: list[list[float]], positive: list[int], tau: float) -> float:
    """Mean over rows i of -log(exp(cos(i,pos)/tau) / sum_{k != i} exp(cos(i,k)/tau))."""
    total = 0.0
    for i, r in enumerate(rows):
        denom = sum(math.exp(_cos(r, rows[k]) / tau) for k in range(len(rows)) if k != i)
        total += -math.log(math.exp(_cos(r, rows[positive[i]]) / tau) / denom)
    return total / len(rows)


def test_nt_xent_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    rows = torch.cat([z1, z2]).tolist()
    expected = _nt_xent_by_hand(rows, positive=[3, 4, 5, 0, 1, 2], tau=0.5)
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx(expected, rel=1e-5)
    # temperature matters and the loss is symmetric in the two views
    assert nt_xent(z1, z2, 0.1).item() == pytest.approx(
        _nt_xent_by_hand(rows, [3, 4, 5, 0, 1, 2], 0.1), rel=1e-5
    )
    assert nt_xent(z2, z1, 0.5).item() == pytest.approx(expected, rel=1e-5)


def test_nt_xent_scale_invariant_and_prefers_aligned_views():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(16, 8, generator=g)
    aligned = nt_xent(z, z + 0.01 * torch.randn(16, 8, generator=g))
    random = nt_xent(z, torch.randn(16, 8, generator=g))
    assert aligned < random
    assert nt_xent(z, 3.0 * z).item() == pytest.approx(nt_xent(z, z).item(), rel=1e-5)
    # 2N-way lower bound: a perfect positive still competes with 2N-2 negatives
    assert aligned.item() > 0.0


def test_nt_xent_logits_stay_float32_under_bf16_autocast():
    g = torch.Generator().manual_seed(6)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = nt_xent(z1, z2, 0.2)
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(nt_xent(z1, z2, 0.2).item(), rel=1e-6)


def test_nt_xent_local_gather_is_the_default():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    assert nt_xent(z1, z2, 0.5, gather=local).item() == nt_xent(z1, z2, 0.5).item()


def test_nt_xent_uses_the_gather_passed_in():
    """Two simulated ranks: each rank's gather returns both ranks' rows and its offset; the mean of the two
    rank losses is the global-batch loss (what DDP computes with ``distributed.gather_rows``)."""
    g = torch.Generator().manual_seed(7)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    q = {"1": F.normalize(z1, dim=1), "2": F.normalize(z2, dim=1)}

    def rank_gather(r: int):
        def gather(x: torch.Tensor) -> tuple[torch.Tensor, int]:
            view = "1" if torch.equal(x, q["1"][r * 3 : r * 3 + 3]) else "2"  # which view's rows to "gather"
            return q[view], r * 3

        return gather

    per_rank = [nt_xent(z1[r * 3 : r * 3 + 3], z2[r * 3 : r * 3 + 3], 0.5, rank_gather(r)) for r in range(2)]
    assert (sum(per_rank) / 2).item() == pytest.approx(nt_xent(z1, z2, 0.5).item(), rel=1e-5)


def test_gathered_keys_averaged_over_ranks_equal_the_global_batch_loss():
    """What DDP with a gathering ``Gather`` computes: each rank's local queries vs all ranks' keys at its offset."""
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    k1, k2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    per_rank = [
        nt_xent_keys(k1[r * 3 : r * 3 + 3], k2[r * 3 : r * 3 + 3], k1, k2, r * 3, 0.5) for r in range(2)
    ]
    assert (sum(per_rank) / 2).item() == pytest.approx(nt_xent(z1, z2, 0.5).item(), rel=1e-5)


def test_equimod_loss_matches_hand_computation_over_4n_set():
    g = torch.Generator().manual_seed(3)
    y_t, y_hat = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)  # 2N = 4 (N=2, two views)
    rows = torch.cat([y_t, y_hat]).tolist()
    # positive of y_hat[i] is y_t[i] and vice versa; everything else (incl. the other view) is a negative
    expected = _nt_xent_by_hand(rows, positive=[4, 5, 6, 7, 0, 1, 2, 3], tau=0.2)
    assert equimod_loss(y_t, y_hat, 0.2).item() == pytest.approx(expected, rel=1e-5)


def test_rotation_ce_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 3])
    e = math.exp
    expected = -(math.log(e(2) / (e(2) + 3)) + math.log(1 / (3 + e(1)))) / 2
    assert rotation_ce(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_separation_loss_value_and_stop_gradient():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    b = torch.tensor([[-1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    # cos = -1 and 1/sqrt(2): |mean| = |(-1 + 0.7071) / 2|
    loss = separation_loss(a, b)
    assert loss.item() == pytest.approx(abs(-1 + 1 / math.sqrt(2)) / 2, rel=1e-6)
    loss.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert b.grad is None  # stop-gradient on the second argument
    orth = separation_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]))
    assert orth.item() == pytest.approx(0.0, abs=1e-7)


def test_head_norm_gap_by_hand():
    head_a, head_b = nn.Linear(2, 1, bias=True), nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        head_a.weight.copy_(torch.tensor([[1.0, 2.0]]))
        head_a.bias.copy_(torch.tensor([0.5]))
        head_b.weight.copy_(torch.tensor([[3.0, 0.0, 1.0]]))
    # |(1 + 4 + 0.25) - (9 + 0 + 1)| = 4.75
    gap = head_norm_gap(head_a.parameters(), head_b.parameters())
    assert gap.item() == pytest.approx(4.75)
    gap.backward()
    assert head_b.weight.grad is not None and head_a.weight.grad is not None
    # d|A - B|/dA = sign(A - B) * 2 theta = -2 theta
    assert torch.allclose(head_a.weight.grad, torch.tensor([[-2.0, -4.0]]))


def test_contrastive_loss_decreases_under_gradient_steps():
    g = torch.Generator().manual_seed(4)
    z1 = torch.randn(8, 4, generator=g, requires_grad=True)
    z2 = torch.randn(8, 4, generator=g, requires_grad=True)
    opt = torch.optim.SGD([z1, z2], lr=0.5)
    first = None
    for _ in range(20):
        loss = nt_xent(z1, z2, 0.5)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first
