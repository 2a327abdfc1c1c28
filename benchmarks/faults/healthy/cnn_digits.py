"""Healthy: a small CNN with BatchNorm (conv bias off) on standardized digit images, SGD with
momentum, a shuffled DataLoader of 64, weight decay kept off norms and biases."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT: list[str] = []


def block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


def model():
    return nn.Sequential(
        block(1, 16), block(16, 32), nn.MaxPool2d(2), block(32, 32),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip


def setup():
    train, val = digits()
    return tw.Setup(
        model=model,
        train=DataLoader(train, batch_size=64, shuffle=True),
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.SGD(
            tw.param_groups(p, weight_decay=5e-4), lr=0.05, momentum=0.9, nesterov=True
        ),
    )
