"""Initialisation: the output layer's bias at what a model that knows nothing should predict
(Recipe.output_bias, tw.init_output_bias), and Kaiming weights (tw.kaiming_init_).

Classification: log of the class prior, so the initial loss is the prior's entropy rather than
log C, and the first steps are not spent learning the class frequencies (Karpathy, "A recipe
for training neural networks": init well). Multilabel: the logit of each label's rate.
Regression: the target mean. Only a final nn.Linear / nn.Conv* with a bias whose size matches
is touched; anything else is left as built (and fit says so).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainwise.context import StaticContext
from trainwise.errors import SetupError
from trainwise.loss_kinds import IGNORE_INDEX

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_EPS = 1e-3  # added to every count: a class absent from the sample gets a finite log prior


def output_bias_init(
    model: nn.Module, ctx: StaticContext, y_range: tuple[float, float] | None = None
) -> str:
    """Set the bias of `model`'s output layer (the layer that produced ctx's output); returns
    what was done, for the record ("" when nothing applied). `y_range`: the output goes
    through lo + (hi - lo) sigmoid (tw.YRange), so a regression's bias is set to the logit of
    the target mean's place in the range rather than to the mean itself."""
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
    if y_range is not None and ctx.task == "regression":
        lo, hi = y_range
        value = torch.logit(((value - lo) / (hi - lo)).clamp(_EPS, 1 - _EPS))
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


# -- the public helpers: tw.init_output_bias, tw.kaiming_init_ ----------------------------------

_KAIMING_LAYERS = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)  # fmt: skip
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def init_output_bias(model: nn.Module, data: Any, task: str | None = None) -> str:
    """Set the bias of `model`'s output layer as tw.fit does (the module doc): the log class
    prior, each label's log-odds, or the target mean, read from a sample of `data` (a Dataset
    or DataLoader of (input, target)). task: "classification", "multilabel", "regression" or
    "segmentation"; inferred from the output and targets when None. Returns what was set;
    raises SetupError when the output does not come from a Linear/Conv layer with a bias."""
    from trainwise.spec import Setup

    if not isinstance(model, nn.Module):
        raise SetupError(
            f"init_output_bias(model=...): expected the nn.Module itself, got {type(model).__name__}"
        )
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    setup = Setup(model=model, train=data, task=task, device=device, name="init_output_bias")
    done = output_bias_init(model, StaticContext(setup))
    if not done:
        raise SetupError(
            f"init_output_bias: {type(model).__name__}'s output is not produced by a final "
            "nn.Linear / nn.Conv layer with a bias of the output's size (or the targets do not "
            "fit the task); nothing was set"
        )
    return done


def kaiming_init_(model: nn.Module, nonlinearity: str = "relu", a: float = 0.0) -> nn.Module:
    """Kaiming-normal weights for every Linear / Conv / ConvTranspose layer (He et al. 2015,
    "Delving Deep into Rectifiers": std = gain / sqrt(fan_in), gain sqrt(2) for ReLU, so the
    activations keep their scale through the depth), zero biases, norm layers at weight 1 and
    bias 0. torch's own default for these layers is uniform with std 1 / sqrt(3 fan_in), which
    shrinks ReLU activations by about 1/sqrt(6) per layer. nonlinearity: what follows the layers
    ("relu", "leaky_relu" with slope `a`, "tanh", "selu", "linear", ...: torch's
    calculate_gain names). Returns the model, changed in place."""
    try:
        nn.init.calculate_gain(nonlinearity, a if nonlinearity == "leaky_relu" else None)
    except ValueError:
        raise SetupError(
            f"kaiming_init_(nonlinearity={nonlinearity!r}): expected one of torch's "
            "calculate_gain names: relu, leaky_relu, tanh, sigmoid, selu, linear, conv2d"
        ) from None
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _KAIMING_LAYERS):
                nn.init.kaiming_normal_(
                    module.weight, a=a, mode="fan_in", nonlinearity=nonlinearity
                )
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, _NORMS) and getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return model
