"""A convolutional autoencoder upsampling with ConvTranspose2d(kernel 3, stride 2):
checkerboard artifacts."""

import sys
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["deconv-checkerboard"]


def setup():
    train, val = digits()
    x, vx = train.tensors[0], val.tensors[0]
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1),
            nn.ReLU(),  # 8x8 -> 4x4
            nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),  # -> 8x8
        ),  # fmt: skip
        train=TensorDataset(x, x),
        val=TensorDataset(vx, vx),
        loss=nn.MSELoss(),
    )
