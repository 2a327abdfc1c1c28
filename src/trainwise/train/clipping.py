"""Gradient clipping at a norm measured on the run itself (Recipe(clip="auto")).

The first MEASURED steps run unclipped and record the total gradient norm; from then on the
gradients are clipped at its 90th percentile, a bound that ordinary steps stay under and that
catches the rare spike (the seeds' "clip gradients" tip, with the threshold read, not guessed).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

MEASURED = 20  # steps whose norms set the threshold
PERCENTILE = 90


class GradientClipper:
    """`clip(params)` after backward (and after unscaling under AMP), before the step."""

    def __init__(self, setting: float | str | None) -> None:
        self.auto = setting == "auto"
        self.max_norm: float | None = None if setting in ("auto", None) else float(setting)
        self.norms: list[float] = []

    def clip(self, params: list[nn.Parameter]) -> None:
        if self.max_norm is not None:
            nn.utils.clip_grad_norm_(params, self.max_norm)
            return
        if not self.auto:
            return
        # Measuring: the norm without clipping (max_norm inf), one sync per step while it lasts.
        norm = float(nn.utils.clip_grad_norm_(params, math.inf))
        if math.isfinite(norm):
            self.norms.append(norm)
        if len(self.norms) >= MEASURED:
            self.max_norm = float(np.percentile(self.norms, PERCENTILE))

    def state_dict(self) -> dict:
        return {"max_norm": self.max_norm, "norms": list(self.norms)}

    def load_state_dict(self, state: dict) -> None:
        self.max_norm, self.norms = state["max_norm"], list(state["norms"])


def grad_params(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for g in optimizer.param_groups for p in g["params"]]
