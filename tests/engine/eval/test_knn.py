"""Weighted kNN against a hand computation and against E-SSL's knn_predict written out literally."""

from __future__ import annotations

import math

import torch

from engine.eval.knn import knn_accuracy, weighted_knn_predict

# Bank on the unit circle-ish: cosine similarities to the query (1, 0) are 1, 0, 1/sqrt(2), -1.
BANK = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
LABELS = torch.tensor([0, 1, 1, 0])
QUERY = torch.tensor([[5.0, 0.0]])


def test_hand_computation_low_temperature_prefers_the_closest() -> None:
    # k=3 neighbours: #0 (sim 1, class 0), #2 (sim .7071, class 1), #1 (sim 0, class 1).
    # T=0.1: class 0 = e^10 = 22026.5; class 1 = e^7.071 + e^0 = 1177.3 + 1 -> class 0.
    assert math.exp(10) > math.exp(10 / math.sqrt(2)) + 1
    assert weighted_knn_predict(BANK, LABELS, QUERY, 2, k=3, temperature=0.1).tolist() == [0]


def test_hand_computation_high_temperature_counts_votes() -> None:
    # T=10: class 0 = e^0.1 = 1.105; class 1 = e^0.0707 + e^0 = 2.073 -> class 1 (two votes win).
    assert math.exp(0.1) < math.exp(0.1 / math.sqrt(2)) + 1
    assert weighted_knn_predict(BANK, LABELS, QUERY, 2, k=3, temperature=10.0).tolist() == [1]


def test_k_one_and_k_larger_than_bank() -> None:
    assert weighted_knn_predict(BANK, LABELS, torch.tensor([[0.1, 1.0]]), 2, k=1).tolist() == [1]
    # k clipped to 4: class 0 gets e^(10*(-.0995)) + e^(10*.0995)..., computed by the reference below
    q = torch.tensor([[0.1, 1.0]])
    assert (
        weighted_knn_predict(BANK, LABELS, q, 2, k=99).tolist()
        == _reference(BANK, LABELS, q, 2, 4, 0.1).tolist()
    )


def _reference(bank, labels, q, classes, k, t):
    """E-SSL cifar10/utils.py knn_predict, transcribed (feature bank as [D, N])."""
    feature = torch.nn.functional.normalize(q, dim=1)
    feature_bank = torch.nn.functional.normalize(bank, dim=1).t()
    sim_matrix = torch.mm(feature, feature_bank)
    sim_weight, sim_indices = sim_matrix.topk(k=k, dim=-1)
    sim_labels = torch.gather(labels.expand(feature.size(0), -1), dim=-1, index=sim_indices)
    sim_weight = (sim_weight / t).exp()
    one_hot = torch.zeros(feature.size(0) * k, classes).scatter(-1, sim_labels.view(-1, 1), 1.0)
    scores = torch.sum(one_hot.view(feature.size(0), -1, classes) * sim_weight.unsqueeze(-1), dim=1)
    return scores.argsort(dim=-1, descending=True)[:, 0]


def test_matches_essl_reference_and_batching() -> None:
    g = torch.Generator().manual_seed(0)
    bank, labels = torch.randn(300, 16, generator=g), torch.randint(0, 5, (300,), generator=g)
    q = torch.randn(70, 16, generator=g)
    ours = weighted_knn_predict(bank, labels, q, 5, k=20, temperature=0.1, batch_size=16)
    assert torch.equal(ours, _reference(bank, labels, q, 5, 20, 0.1))


def test_accuracy_on_separable_clusters() -> None:
    g = torch.Generator().manual_seed(1)
    centers = torch.eye(4) * 10
    labels = torch.arange(4).repeat_interleave(25)
    bank = centers[labels] + torch.randn(100, 4, generator=g)
    queries = centers[labels] + torch.randn(100, 4, generator=g)
    assert knn_accuracy(bank, labels, queries, labels, 4, k=10) == 1.0
    shuffled = labels[torch.randperm(100, generator=g)]
    assert knn_accuracy(bank, labels, queries, shuffled, 4, k=10) < 0.6
