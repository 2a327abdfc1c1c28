"""A CNN fed the raw 0..16 digit intensities, never standardized."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["inputs-not-normalized"]


def setup():
    train, val = digits(standardize=False)
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 10)
        ),
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
