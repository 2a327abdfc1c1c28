"""Per-sample losses of the setup's own loss function, for ranking samples by loss.

A loss module with a `reduction` (every torch loss) is copied with reduction="none"; a known
functional loss (F.cross_entropy, ...) gets reduction="none"; any other callable is called one
sample at a time (correct, B calls per batch). A model that computes its own loss gets the
known loss its value matched (StaticContext.prediction_loss), else the task's usual one, and a
note says which.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainwise.context import _LOSS_FUNCTIONS  # the functional losses trainwise knows
from trainwise.steps import TrainingStep

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B, ...) -> (B,)


def per_sample_loss(loss: Any, matched: Any, task: str) -> tuple[PerSampleLoss, str]:
    """(function of (prediction, target) giving one loss per sample, note: "" or what was used
    instead of the setup's loss)."""
    note = ""
    if loss is None or isinstance(loss, TrainingStep):
        what = "the model's own loss" if loss is None else f"the training step {loss.name}"
        if matched is not None:
            loss, note = matched, f"{what} ranked by the loss it matches, {_name(matched)}"
        else:
            loss = (
                F.mse_loss
                if task == "regression"
                else (
                    F.binary_cross_entropy_with_logits if task == "multilabel" else F.cross_entropy
                )
            )
            note = f"{what} cannot be taken per sample: samples ranked by {_name(loss)}"
    unreduced = _unreduced(loss)
    if unreduced is None:
        return _one_at_a_time(loss), note
    return lambda prediction, target: _per_row(unreduced(prediction, target)), note


def _unreduced(loss: Any) -> Callable[[Any, Any], torch.Tensor] | None:
    if isinstance(loss, nn.Module) and isinstance(getattr(loss, "reduction", None), str):
        unreduced = copy.copy(loss)  # shares the weight tensors, changes only the reduction
        unreduced.reduction = "none"
        return unreduced
    if loss in _LOSS_FUNCTIONS:
        return functools.partial(loss, reduction="none")
    return None


def _per_row(values: torch.Tensor) -> torch.Tensor:
    """(B, ...) element losses -> (B,): the mean over each sample's elements (pixels, outputs)."""
    if values.dim() == 0:
        return values.reshape(1)
    return values.reshape(values.shape[0], -1).float().mean(dim=1)


def _one_at_a_time(loss: Callable[[Any, Any], torch.Tensor]) -> PerSampleLoss:
    def losses(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rows = [loss(prediction[i : i + 1], target[i : i + 1]) for i in range(len(target))]
        return torch.stack([r.reshape(()).float() for r in rows])

    return losses


def _name(loss: Any) -> str:
    if isinstance(loss, nn.Module):
        return type(loss).__name__
    return getattr(loss, "__name__", type(loss).__name__)
