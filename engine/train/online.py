"""The online linear classifier: a linear head trained during pretraining on DETACHED backbone features, as
Understanding-ESSL tracks every pretext run (docs/methods.md §4.4).

Each step the head sees the batch's un-augmented images (``engine.augment.preprocess``) through the backbone in
eval mode under ``no_grad``, so it never changes the method's training (no gradient, no BatchNorm statistics, no
random draws: a run is bit-identical with and without it). It has its own Adam optimiser (lr 1e-3). Per epoch
it reports its accuracy on the batches it was trained on, each measured before that batch's update
(``online_linear_train_acc``), and on the held-out kNN queries (``online_linear_acc``). It is a monitor, not part
of the model, but its weights and Adam state travel in the trainer's resume state (``state`` / ``load``), so a
resumed run logs the same online accuracies as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.augment import preprocess
from engine.core.errors import CheckpointError
from engine.train.data import autocast, embed_backbone

LR = 1e-3


@torch.no_grad()
def detached_features(model: nn.Module, x_uint8: Tensor, amp: bool) -> Tensor:
    """Backbone features of uint8 images ``[B, 3, H, W]`` in eval mode, float32, without gradient."""
    was = model.training
    model.eval()
    with autocast(x_uint8.device, amp):
        h = model.embed(preprocess(x_uint8, model.image_size))["backbone"].float()
    model.train(was)
    return h


class OnlineLinear:
    """``Linear(feat_dim, num_classes)`` and its optimiser; ``step`` per batch, ``end_epoch`` per epoch."""

    def __init__(self, feat_dim: int, num_classes: int, device: torch.device, seed: int = 0) -> None:
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the trainer's RNG
            torch.manual_seed(seed)
            self.head = nn.Linear(feat_dim, max(1, num_classes)).to(device)
        self.opt = torch.optim.Adam(self.head.parameters(), lr=LR)
        self.correct, self.seen = 0, 0

    def step(self, model: nn.Module, x_uint8: Tensor, labels: Tensor, amp: bool = False) -> None:
        """One update on a batch (rows labelled -1 are ignored); counts the accuracy before the update."""
        keep = labels >= 0
        if not bool(keep.any()):
            return
        h = detached_features(model, x_uint8, amp)[keep]
        y = labels[keep].to(h.device)
        logits = self.head(h)
        self.correct += int((logits.detach().argmax(1) == y).sum())
        self.seen += len(y)
        loss = F.cross_entropy(logits, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    @torch.no_grad()
    def accuracy(
        self, model: nn.Module, images: np.ndarray, labels: np.ndarray, device: torch.device
    ) -> float:
        """Accuracy on uint8 ``[N, H, W, 3]`` images (NaN when none is labelled)."""
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        keep = y >= 0
        if len(images) == 0 or not bool(keep.any()):
            return float("nan")
        h = embed_backbone(model, images, device, amp=False)
        pred = self.head(h.to(next(self.head.parameters()).device)).argmax(1).cpu()
        return float((pred[keep] == y[keep]).float().mean())

    def end_epoch(
        self, model: nn.Module, images: np.ndarray, labels: np.ndarray, device: torch.device
    ) -> dict:
        """``{"online_linear_train_acc", "online_linear_acc"}`` for the epoch; resets the running count."""
        train = self.correct / self.seen if self.seen else float("nan")
        self.correct, self.seen = 0, 0
        return {
            "online_linear_train_acc": train,
            "online_linear_acc": self.accuracy(model, images, labels, device),
        }

    def state(self) -> dict[str, Tensor]:
        """The head's weights and its Adam state as named CPU tensors (``online/head/*``, ``online/opt/<i>/*``),
        saved with the trainer's resume state. Taken at an epoch's end, when the running accuracy is empty."""
        out = {f"online/head/{k}": v for k, v in self.head.state_dict().items()}
        for idx, st in self.opt.state_dict()["state"].items():
            out.update({f"online/opt/{idx}/{name}": v for name, v in st.items() if torch.is_tensor(v)})
        return {k: v.detach().cpu().contiguous().clone() for k, v in out.items()}

    def load(self, tensors: dict[str, Tensor]) -> bool:
        """Restore what ``state`` saved; False, keeping the seeded start, when ``tensors`` has none of it (a
        checkpoint written before the online classifier was saved)."""
        head = {k.removeprefix("online/head/"): v for k, v in tensors.items() if k.startswith("online/head/")}
        if not head:
            return False
        opt: dict[int, dict[str, Tensor]] = {}
        for key, v in tensors.items():
            if key.startswith("online/opt/"):
                idx, name = key.removeprefix("online/opt/").split("/", 1)
                opt.setdefault(int(idx), {})[name] = v
        try:
            self.head.load_state_dict(head)
            self.opt.load_state_dict({"state": opt, "param_groups": self.opt.state_dict()["param_groups"]})
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"the resume state's online linear classifier does not fit this run: {e}"
            ) from e
        return True
