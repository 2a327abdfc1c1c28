"""The small training-loop pieces the range test and the trial runs share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from trainwise.data import as_pair, to_device
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


def batch_loss(
    model: nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor], batch: Any, index: int, device
) -> torch.Tensor:
    """loss_fn(model(x), y) for one (x, y) batch, moved to `device`."""
    x, y = as_pair(batch, index, "lr_find: the training loader's batch")
    return loss_fn(model(to_device(x, device)), to_device(y, device))
