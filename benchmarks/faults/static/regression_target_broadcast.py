"""Regression whose model returns (N, 1) while the targets are (N,): MSE broadcasts the pair
to (N, N) and compares every prediction with every target."""

import sys
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _synthetic import friedman  # noqa: E402

EXPECT = ["output-size-mismatch"]


def setup():
    train, val = friedman()
    (x, y), (vx, vy) = train.tensors, val.tensors
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1)),
        train=TensorDataset(x, y.squeeze(-1)),
        val=TensorDataset(vx, vy.squeeze(-1)),
        loss=nn.MSELoss(),
        task="regression",
    )
