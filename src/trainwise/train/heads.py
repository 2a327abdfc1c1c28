"""tw.YRange: an output head that bounds a regression's predictions to (lo, hi).

fastai's `y_range` (sigmoid_range): lo + (hi - lo) * sigmoid(x). A target known to lie in a
range (a rating from 1 to 5, a probability, a percentage) is then never predicted outside it,
and the last layer does not have to learn the range's scale and offset. The sigmoid reaches
its ends only at infinite inputs, so fastai sets hi a little above the largest target (5.5 for
ratings up to 5); do the same when the extremes are common.
"""

from __future__ import annotations

import torch
from torch import nn

from trainwise.errors import SetupError


class YRange(nn.Module):
    """lo + (hi - lo) * sigmoid(x), elementwise; append it to a model's output layer:
    `nn.Sequential(body, nn.Linear(64, 1), tw.YRange(0, 5.5))`."""

    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
        if not numbers or not lo < hi:
            raise SetupError(f"YRange(lo={lo!r}, hi={hi!r}): expected two numbers with lo < hi")
        self.lo, self.hi = float(lo), float(hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lo + (self.hi - self.lo) * torch.sigmoid(x)

    def extra_repr(self) -> str:
        return f"lo={self.lo:g}, hi={self.hi:g}"
