"""Fine-tuning gone wrong: the new head is attached first, then a freeze loop freezes
everything, head included. Nothing is trainable."""

import sys
from pathlib import Path

import torch
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["frozen-parameters"]


def backbone():  # stands in for a pretrained feature extractor
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())


def model():
    net = nn.Sequential(backbone(), nn.Linear(128, 10))
    for p in net.parameters():  # meant to freeze the backbone only
        p.requires_grad = False
    return net


def setup():
    train, val = digits(flat=True)
    return tw.Setup(
        model=model,
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
    )
