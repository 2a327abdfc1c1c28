"""Digit classes regressed with MSE on the integer labels: class 9 is treated as 'far' from
class 0 and the model learns the average label."""

import sys
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["wrong-loss-for-task"]


def setup():
    train, val = digits(flat=True)
    (x, y), (vx, vy) = train.tensors, val.tensors
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 1)),
        train=TensorDataset(x, y.unsqueeze(1)),  # (N, 1) integer labels, to match the output
        val=TensorDataset(vx, vy.unsqueeze(1)),
        loss=nn.MSELoss(),
    )
