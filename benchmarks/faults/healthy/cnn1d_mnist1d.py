"""Healthy: a small 1D CNN on MNIST-1D (generated offline by the mnist1d package)."""

import sys
from pathlib import Path

import torch
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[2]))
from healthy_setups import cnn1d, mnist1d_data  # noqa: E402

EXPECT: list[str] = []


def setup():
    train, val = mnist1d_data(n=2000)
    return tw.Setup(
        model=cnn1d,
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
    )
