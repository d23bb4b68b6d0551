"""Understanding-ESSL's standalone pretext reference: predict which of a task's k transformations was applied
(docs/methods.md §4.2, §4.4), optionally with the explaining-away class term of its verification script.

``task`` is any :data:`engine.augment.pretext.PRETEXT_TASKS` name; the head is the paper's
Linear(feat, 2048)-ReLU-Linear(2048, k) on the backbone features, trained with cross-entropy on every image of the
batch under all k labels (``copies="all"``, the authors' four-fold rotation) or under one uniformly drawn label
(``copies="sampled"``, k times cheaper for the 24 jigsaws).

``class_term`` (Understanding-ESSL ``ESSL/verification.py``, λ = ``class_weight``):
- ``none``: pretext CE only (``normal``);
- ``add``: pretext CE + λ · CE(classifier(h), class), the classifier trained jointly with the backbone;
- ``eliminate``: pretext CE − λ · CE(classifier(h), class) for the backbone, while the classifier itself is
  trained separately (on detached features, with +CE) to read the class: the backbone is pushed to remove class
  information. As the authors wrote it this is unbounded below (the backbone can make the frozen classifier's CE
  as large as it likes) and it diverges here (docs/results.md §5);
- ``confuse``: the bounded form of ``eliminate`` (the domain-confusion loss of Tzeng et al., 2015): the backbone
  minimises λ · (CE(classifier(h), uniform) − ln C), which is ≥ 0 and is 0 exactly when the separately trained
  classifier can no longer tell the classes apart (uniform output), instead of maximising its CE.
  The class labels come from the trainer's batch: it adds ``views["y"]`` for a model whose
  ``uses_labels`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Generator, Tensor, nn

from engine.augment import augment, light_recipe
from engine.augment.pretext import PRETEXT_TASKS, expand, get_task, sample_labels, transform, without_task
from engine.core.errors import ConfigError
from engine.methods.losses import rotation_ce
from engine.methods.protocol import logits_key
from engine.models import mlp, scaled_hidden

CLASS_TERMS = ("none", "add", "eliminate", "confuse")
COPIES = ("all", "sampled")


@dataclass(frozen=True)
class PretextConfig:
    """Understanding-ESSL equivariant_tasks.py: Linear(512,2048)-ReLU-Linear(2048,k), CE; λ = 1 (verification)."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "task": tuple(PRETEXT_TASKS),
        "copies": COPIES,
        "class_term": CLASS_TERMS,
    }

    task: str = "rotation"
    hidden: tuple[int, ...] = (2048,)
    copies: str = "all"
    class_term: str = "none"
    class_weight: float = 1.0
    num_classes: int = 10  # the trainer sets the dataset's class count when the option is not given
    lr_scale: float = 1.0
    # True: the base view never applies the task's own transformation before the label (the light recipe's
    # random mirror would otherwise make hflip's label unlearnable; docs/methods.md §4.4). False keeps the
    # recipe as it is, so earlier configs mean what they meant.
    task_free_base: bool = False


def pretext_views(x: Tensor, task: str, copies: str, generator: Generator) -> tuple[Tensor, Tensor]:
    """``(images, labels)``: every image under all k labels (block j = label j) or under one drawn label."""
    if copies == "all":
        return expand(x, task)
    labels = sample_labels(len(x), task, generator).to(x.device)
    return transform(x, task, labels), labels


def class_rows(y: Tensor, n_views: int) -> Tensor:
    """The class label of each of ``n_views`` pretext inputs built from a batch labelled ``y`` (blocks of B)."""
    return y.long().repeat(n_views // len(y))


def confusion(logits: Tensor, rows: Tensor) -> Tensor:
    """Mean over ``rows`` of CE(softmax(logits), uniform) − ln C = KL(uniform ‖ softmax(logits)): ≥ 0, and 0 exactly
    when the output is uniform (the classifier cannot tell the classes apart)."""
    if not bool(rows.any()):
        return logits.sum() * 0.0
    z = logits[rows]
    return (-F.log_softmax(z, dim=1).mean(1) - torch.log(torch.tensor(float(z.shape[1])))).mean()


class Pretext(nn.Module):
    """Backbone + pretext head (+ a linear class head when ``class_term`` is not ``none``)."""

    Config = PretextConfig
    trainable = True
    spaces: tuple[str, ...] = ("backbone", "rotation_logits")  # embed()'s keys at the default task (rotation)
    head_attr: ClassVar[str] = "pretext_head"

    def __init__(
        self, backbone: nn.Module, config: PretextConfig = PretextConfig(), image_size: int = 32
    ) -> None:
        super().__init__()
        self.config, self.image_size = config, image_size
        self.pretext_task = getattr(config, "task", "rotation")
        self.copies = getattr(config, "copies", "all")
        self.class_term = getattr(config, "class_term", "none")
        self.logits_key = logits_key(self.pretext_task)
        self.spaces = ("backbone", self.logits_key)
        self.backbone = backbone
        k = get_task(self.pretext_task).n_labels
        hidden = getattr(config, "hidden", None) or getattr(config, "rot_hidden", (2048,))
        dims = [backbone.feat_dim, *scaled_hidden(hidden, backbone.feat_dim), k]
        self.add_module(self.head_attr, mlp(dims, norm=None, bias=True))
        self.uses_labels = self.class_term != "none"
        if self.uses_labels:
            self.classifier = nn.Linear(backbone.feat_dim, int(config.num_classes))

    @property
    def head(self) -> nn.Module:
        return getattr(self, self.head_attr)

    def make_views(self, images_uint8: Tensor, generator: Generator) -> dict[str, Tensor]:
        """{"xr" [kB or B, 3, S, S] lightly augmented views under the task's labels, "yr" their labels}; with
        ``task_free_base`` the light recipe never applies the task itself first."""
        recipe = light_recipe(self.image_size)
        if getattr(self.config, "task_free_base", False):
            recipe = without_task(recipe, self.pretext_task)
        x, _ = augment(images_uint8, recipe, generator)
        xt, yt = pretext_views(x, self.pretext_task, self.copies, generator)
        return {"xr": xt, "yr": yt}

    def forward(self, views: dict[str, Tensor]) -> dict[str, Tensor]:
        t = self.pretext_task
        h = self.backbone(views["xr"])
        logits = self.head(h)
        loss_t = rotation_ce(logits, views["yr"])
        with torch.no_grad():
            acc = (logits.argmax(1) == views["yr"]).float().mean()
        out = {f"loss/{t}": loss_t.detach(), f"acc/{t}": acc}
        loss = loss_t
        if self.uses_labels:
            loss = loss + self._class_term(h, views, out)
        return {"loss": loss, **out}

    def _class_term(self, h: Tensor, views: dict[str, Tensor], out: dict[str, Tensor]) -> Tensor:
        """The explaining-away term added to the pretext loss (records ``loss/class`` and ``acc/class``)."""
        if "y" not in views:
            raise ConfigError(
                f"class_term={self.class_term!r} needs class labels; the trainer passes them as views['y']"
            )
        y = class_rows(views["y"].to(h.device), len(h))
        w = float(self.config.class_weight)
        if self.class_term == "add":
            logits = self.classifier(h)
            ce = F.cross_entropy(logits.float(), y, ignore_index=-1)
            term = w * ce
        else:  # the backbone works against a classifier that is itself trained (on detached h) to read the class
            frozen = F.linear(h, self.classifier.weight.detach(), self.classifier.bias.detach())
            logits = self.classifier(h.detach())
            ce = F.cross_entropy(logits.float(), y, ignore_index=-1)
            if self.class_term == "eliminate":  # maximise the classifier's CE (unbounded)
                term = ce - w * F.cross_entropy(frozen.float(), y, ignore_index=-1)
            else:  # confuse: pull its output to uniform (bounded below by 0)
                term = ce + w * confusion(frozen.float(), y >= 0)
        with torch.no_grad():
            ok = y >= 0
            acc = (logits.argmax(1)[ok] == y[ok]).float().mean() if bool(ok.any()) else torch.zeros(())
        out["loss/class"], out["acc/class"] = ce.detach(), acc
        return term

    def embed(self, x01: Tensor) -> dict[str, Tensor]:
        """{"backbone", "rotation_logits" | "pretext_logits" [B, k] (of the image as given)}."""
        h = self.backbone(x01)
        return {"backbone": h, self.logits_key: self.head(h)}
