"""Pieces of a user's own training code that a Setup can take in place of plain functions.

A framework keeps the loss and the optimizer inside the model's class (Lightning's
`training_step` and `configure_optimizers`; HF's optimizer grouped by parameter names): these
two wrappers say so, so that every experiment calls them on its own fresh model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class TrainingStep:
    """A loss the user's own code computes from a whole batch: `fn(model, batch)` returns a
    scalar tensor, or a dict / ModelOutput holding it under "loss". `Setup(loss=...)` takes
    it; Lightning's `training_step` enters this way. `name` is how messages name it."""

    fn: Callable[[nn.Module, Any], Any]
    name: str = "training_step"


@dataclass(frozen=True)
class ModuleOptimizer:
    """An optimizer factory that needs the model itself, not its parameters: `fn(model) ->
    Optimizer`. `Setup(optimizer=...)` takes it; Lightning's configure_optimizers and HF's
    weight-decay groups (chosen by parameter name) enter this way."""

    fn: Callable[[nn.Module], torch.optim.Optimizer]
    name: str = "optimizer"
