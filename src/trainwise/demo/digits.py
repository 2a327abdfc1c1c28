"""A small CNN on scikit-learn's bundled digits (1797 8x8 images, no download), three times:
`healthy()` as it should be, `broken()` with three mistakes people really make, and
`cannot_learn()`, clean to the static checks, with a mistake only the experiments reveal.

Both are setup files: `trainwise check src/trainwise/demo/digits.py:broken` works too.
"""

from __future__ import annotations

import dataclasses

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

VAL_SIZE = 297  # 1500 train / 297 validation


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 8, 8) with raw intensities 0..16, labels (N,) in 0..9, in a fixed shuffle."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return x[order], y[order]


def small_cnn(softmax_head: bool = False) -> nn.Module:
    layers = [
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),  # (N, 16, 8, 8)
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 32, 4, 4)
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    ]
    if softmax_head:
        layers.append(nn.Softmax(dim=1))  # mistake: CrossEntropyLoss applies log-softmax itself
    return nn.Sequential(*layers)


def healthy() -> tw.Setup:
    x, y = _digits()
    x_train, x_val = x[VAL_SIZE:], x[:VAL_SIZE]
    mean, std = x_train.mean(), x_train.std()  # train statistics only
    return tw.Setup(
        model=small_cnn,
        train=TensorDataset((x_train - mean) / std, y[VAL_SIZE:]),
        val=TensorDataset((x_val - mean) / std, y[:VAL_SIZE]),
        loss=nn.CrossEntropyLoss(),
        # No weight decay on biases and norm parameters (tw.param_groups), as it should be.
        optimizer=lambda params: torch.optim.AdamW(tw.param_groups(params, weight_decay=0.01), lr=1e-3),
        batch_size=32,
        name="digits (healthy)",
    )


def broken() -> tw.Setup:
    x, y = _digits()
    y = y + 1  # mistake: labels taken 1-based from a spreadsheet, 1..10
    return tw.Setup(
        model=lambda: small_cnn(softmax_head=True),
        train=TensorDataset(x[VAL_SIZE:], y[VAL_SIZE:]),  # mistake: raw 0..16 intensities
        val=TensorDataset(x[:VAL_SIZE], y[:VAL_SIZE]),
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        batch_size=32,
        name="digits (broken)",
    )


def cannot_learn() -> tw.Setup:
    """Static checks pass; the preflight experiments show it cannot learn."""
    return dataclasses.replace(
        healthy(),
        # mistake: the LR of a fine-tuning recipe, for a model trained from scratch
        optimizer=lambda params: torch.optim.SGD(params, lr=1e-5, momentum=0.9),
        name="digits (cannot learn)",
    )


setup = healthy  # `trainwise check src/trainwise/demo/digits.py` checks the healthy one
