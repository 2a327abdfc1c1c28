"""The small training-loop pieces the range test and the trial runs share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainwise.batches import BatchFormat
from trainwise.data import Split, to_device
from trainwise.errors import SetupError


def group_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each parameter group's LR over group 0's, so sweeps keep discriminative LRs' ratios."""
    configured = [float(g["lr"]) for g in optimizer.param_groups]
    return [c / configured[0] if configured[0] > 0 else 1.0 for c in configured]


def set_lrs(optimizer: torch.optim.Optimizer, lr: float, ratios: list[float]) -> None:
    """Group i gets lr * ratios[i]; a tensor LR (capturable / fused optimizers) is filled."""
    for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr * ratio)
        else:
            group["lr"] = lr * ratio


def cycle(loader: Iterable) -> Iterator[Any]:
    """The loader's batches, epoch after epoch."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise SetupError("lr_find: the training loader yielded no batches")


@dataclass(frozen=True)
class BatchLoss:
    """The loss of a loader's batch, however the batch is shaped: `split` takes it apart into
    (model input, target), `loss(model, x, y)` computes the training loss. A Setup gives its
    own (dicts, a model's own loss, a training step); a plain loss function the (x, y) form."""

    split: Split
    loss: Callable[[nn.Module, Any, Any], torch.Tensor]

    @classmethod
    def of(cls, loss: Any) -> BatchLoss:
        """A BatchLoss as it is, or one from a loss function callable(output, target)."""
        if isinstance(loss, BatchLoss):
            return loss
        batches = BatchFormat()
        return cls(batches.split, lambda m, x, y: loss(batches.loss_input(batches.call(m, x)), y))

    def __call__(self, model: nn.Module, batch: Any, index: int, where: str, device) -> Any:
        x, y = self.split(batch, index, where)
        return self.loss(model, to_device(x, device), to_device(y, device))


def batch_loss(model: nn.Module, loss_fn: Any, batch: Any, index: int, device) -> torch.Tensor:
    """The training loss of one batch of the training loader, moved to `device`."""
    return BatchLoss.of(loss_fn)(
        model, batch, index, "lr_find: the training loader's batch", device
    )
