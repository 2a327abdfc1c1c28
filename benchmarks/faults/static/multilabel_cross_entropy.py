"""Multi-label digits (attributes: even, at least 5, prime, round) trained with a softmax
cross-entropy: the attributes compete instead of being predicted independently."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["multilabel-needs-sigmoid"]


def attributes(y):  # (N,) digit -> (N, 4) multi-hot
    even, big = y % 2 == 0, y >= 5
    prime = (y == 2) | (y == 3) | (y == 5) | (y == 7)
    round_ = (y == 0) | (y == 6) | (y == 8) | (y == 9)
    return torch.stack([even, big, prime, round_], dim=1).float()


def setup():
    train, val = digits(flat=True)
    (x, y), (vx, vy) = train.tensors, val.tensors
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 4)),
        train=TensorDataset(x, attributes(y)),
        val=TensorDataset(vx, attributes(vy)),
        loss=nn.CrossEntropyLoss(),
    )
