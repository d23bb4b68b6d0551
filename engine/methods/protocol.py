"""What the trainer, the evaluators, the store builder and the app may call on a built method.

Every class in ``engine.methods.METHODS`` satisfies :class:`Method` once built by ``build_method`` (which adds
``name`` and ``build_kwargs``). Anything else a caller needs is an optional capability with its own protocol
(:class:`Predicts`); callers test for it with ``isinstance`` rather than reaching into a method's heads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import Generator, Tensor, nn

from engine.augment.pretext import PRETEXT_TASKS

# embed() keys that are classifier outputs, not embedding spaces: stores and displacement skip them.
LOGIT_KEYS: frozenset[str] = frozenset({"rotation_logits", "pretext_logits"})


def logits_key(task: str) -> str:
    """The embed() key of a pretext head predicting ``task``: ``rotation_logits`` for four-fold rotation (as every
    checkpoint before the other tasks existed), ``pretext_logits`` for any other task (the method's
    ``pretext_task`` attribute names it)."""
    return "rotation_logits" if task == "rotation" else "pretext_logits"


def head_task(model: Any) -> str | None:
    """The pretext task ``model``'s head predicts (its ``pretext_task`` attribute, a key of
    ``engine.augment.pretext.PRETEXT_TASKS``), ``rotation`` for a model whose ``embed()`` has ``rotation_logits``
    (checkpoints from before the other tasks), or None when it has no pretext head."""
    spaces = tuple(getattr(model, "spaces", ()))
    task = getattr(model, "pretext_task", None)
    if task in PRETEXT_TASKS and logits_key(task) in spaces:
        return task
    return "rotation" if "rotation_logits" in spaces else None


@runtime_checkable
class Method(Protocol):
    """A self-supervised objective on a backbone, as an ``nn.Module``.

    - ``make_views(uint8 [B, 3, H, W], generator)``: the inputs of one training step (views, parameter vectors,
      labels), all random draws from ``generator``.
    - ``model(views)`` (``forward``): ``{"loss": scalar with grad, "loss/<part>": detached, <diagnostics>}``;
      every value is a 0-d tensor, only ``"loss"`` carries a gradient.
    - ``embed(x01 [B, 3, S, S] in [0, 1])``: ``{space: [B, D]}`` in the order of ``spaces``.
    - ``config``: the frozen hyper-parameters (with ``lr_scale``, and ``recipe`` where views are augmented).
    - ``trainable``: False for the untrained reference (``none``); the trainer then takes no step.
    - ``image_size``: the side of the views and of ``embed``'s input.
    - ``name``, ``build_kwargs``: what ``build_method`` needs to rebuild it (checkpoints).
    """

    spaces: ClassVar[tuple[str, ...]]
    trainable: ClassVar[bool]
    config: Any
    image_size: int
    name: str
    build_kwargs: dict[str, Any]

    def make_views(self, images_uint8: Tensor, generator: Generator) -> dict[str, Tensor]: ...

    def __call__(self, views: dict[str, Tensor]) -> dict[str, Tensor]: ...

    def embed(self, x01: Tensor) -> dict[str, Tensor]: ...

    # the nn.Module surface the trainer and checkpoints use
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class Predicts(Protocol):
    """A method that predicts where an augmentation moves an embedding (EquiMod): used by the lab and the
    displacement evaluation in the ``equivariant`` space."""

    def predict(self, y0: Tensor, param_vector: Tensor) -> Tensor: ...
