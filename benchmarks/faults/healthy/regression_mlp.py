"""Healthy: an MLP regressing the standardized Friedman #1 target with MSE (output and target
both (N, 1))."""

import sys
from pathlib import Path

import torch
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _synthetic import friedman  # noqa: E402

EXPECT: list[str] = []


def setup():
    train, val = friedman()
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)
        ),
        train=train,
        val=val,
        loss=nn.MSELoss(),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=1e-4),
    )
