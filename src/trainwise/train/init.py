"""The output layer's bias at what a model that knows nothing should predict (Recipe.output_bias).

Classification: log of the class prior, so the initial loss is the prior's entropy rather than
log C, and the first steps are not spent learning the class frequencies (Karpathy, "A recipe
for training neural networks": init well). Multilabel: the logit of each label's rate.
Regression: the target mean. Only a final nn.Linear / nn.Conv* with a bias whose size matches
is touched; anything else is left as built (and fit says so).
"""

from __future__ import annotations

import torch
from torch import nn

from trainwise.context import StaticContext
from trainwise.loss_kinds import IGNORE_INDEX

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_EPS = 1e-3  # added to every count: a class absent from the sample gets a finite log prior


def output_bias_init(model: nn.Module, ctx: StaticContext) -> str:
    """Set the bias of `model`'s output layer (the layer that produced ctx's output); returns
    what was done, for the record ("" when nothing applied)."""
    out = ctx.output
    call = ctx.trace.producer_of(out) if isinstance(out, torch.Tensor) else None
    if call is None or not call.name:
        return ""
    layer = dict(model.named_modules()).get(call.name)
    if not isinstance(layer, _LAYERS) or layer.bias is None:
        return ""
    value = _bias_value(ctx, layer.bias.numel())
    if value is None:
        return ""
    with torch.no_grad():
        layer.bias.copy_(value.to(layer.bias))
    return f"{call.name}.bias set to {_what(ctx.task)}"


def _bias_value(ctx: StaticContext, size: int) -> torch.Tensor | None:
    y = ctx.train_sample.targets
    if not isinstance(y, torch.Tensor):
        return None
    if ctx.task in ("classification", "segmentation") and not torch.is_floating_point(y):
        labels = y[(y != IGNORE_INDEX) & (y >= 0) & (y < size)].flatten()
        counts = torch.bincount(labels, minlength=size).double() + _EPS
        return (counts / counts.sum()).log()
    if ctx.task == "multilabel" and y.dim() == 2 and y.shape[1] == size:
        rate = y.double().mean(dim=0).clamp(_EPS, 1 - _EPS)
        return (rate / (1 - rate)).log()
    if ctx.task == "regression" and torch.is_floating_point(y):
        mean = y.double().reshape(len(y), -1).mean(dim=0)
        return mean if mean.numel() == size else None
    return None


def _what(task: str) -> str:
    return {"regression": "the target mean", "multilabel": "each label's log-odds"}.get(
        task, "the log class prior"
    )
