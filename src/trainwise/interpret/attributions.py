"""Attribution maps for chosen samples, from Captum: which input values moved the model's
output for the predicted class. Saliency (|∂ output / ∂ input|, one backward pass) by default;
integrated gradients (Sundararajan et al. 2017) on request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trainwise.errors import SetupError

METHODS = ("saliency", "integrated-gradients")
IG_STEPS = 32  # integrated gradients' path steps: Captum's default is 50; 32 keeps it quick


@dataclass(frozen=True)
class Attribution:
    """One sample's attribution map, shaped as its input; target: the class explained."""

    index: int
    target: int | None
    values: np.ndarray


def attribute(model: nn.Module, predict: Any, inputs: torch.Tensor, targets: list[int | None],
              method: str = "saliency") -> list[np.ndarray]:  # fmt: skip
    """Attribution maps (one per row of `inputs`, (B, ...)) of `predict(model, x)`'s output
    for `targets` (a class per row; None: the one output of a regression)."""
    from captum.attr import IntegratedGradients, Saliency

    if method not in METHODS:
        raise SetupError(f"attributions: method={method!r}; expected one of {', '.join(METHODS)}")
    if not inputs.is_floating_point():
        raise SetupError(
            f"attributions need float inputs to take gradients of; these are {inputs.dtype} "
            "(token ids: attribute to the embedding layer instead)"
        )
    was = model.training
    model.eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = predict(model, x)
        return out.reshape(len(x), -1) if out.dim() == 1 or targets[0] is None else out

    target = None if targets[0] is None else torch.as_tensor(targets, device=inputs.device)
    if target is None:
        target = torch.zeros(len(inputs), dtype=torch.long, device=inputs.device)
    try:
        # cuDNN's RNN kernels have no backward in eval mode ("cudnn RNN backward can only be
        # called in training mode", on a GPU): the gradients go through torch's own kernels.
        with torch.backends.cudnn.flags(enabled=False):
            x = inputs.detach().clone().requires_grad_(True)
            if method == "saliency":
                maps = Saliency(forward).attribute(x, target=target, abs=True)
            else:
                maps = IntegratedGradients(forward).attribute(x, target=target, n_steps=IG_STEPS)
    finally:
        model.train(was)
    return [m.detach().cpu().numpy() for m in maps]
