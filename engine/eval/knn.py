"""Weighted kNN classification on embeddings (Wu et al. 2018; E-SSL ``cifar10/utils.py`` ``knn_predict``).

Bank and queries are L2-normalised; each query takes its ``k`` most cosine-similar bank items, and each neighbour
votes for its label with weight ``exp(sim / T)``. Queries are processed in batches so a 10k x 50k similarity
matrix never exists at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def weighted_knn_predict(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
) -> Tensor:
    """Predicted labels ``[Q]`` (long) of ``queries [Q, D]`` from ``bank [N, D]`` with labels ``bank_labels [N]``.

    ``k`` is clipped to the bank size. Ties between classes go to the lower class index.
    """
    bank = F.normalize(bank.float(), dim=1)
    labels = bank_labels.to(bank.device).long()
    k = max(1, min(int(k), bank.shape[0]))
    preds = []
    for start in range(0, queries.shape[0], batch_size):
        q = F.normalize(queries[start : start + batch_size].float().to(bank.device), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)  # [b, k]
        weight = (sim / temperature).exp()
        scores = torch.zeros(q.shape[0], num_classes, device=bank.device)
        scores.scatter_add_(1, labels[idx], weight)  # sum of weights per class
        preds.append(scores.argmax(dim=1))
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=bank.device)


def knn_accuracy(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    query_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    """Fraction of ``queries`` whose weighted-kNN prediction equals ``query_labels``."""
    pred = weighted_knn_predict(bank, bank_labels, queries, num_classes, k, temperature)
    return float((pred.cpu() == query_labels.cpu().long()).float().mean()) if len(pred) else float("nan")
