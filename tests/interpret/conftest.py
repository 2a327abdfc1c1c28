"""Small trained models on synthetic data (seconds to build, deterministic), shared by the
interpretation tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset


def blobs(n: int, classes: int = 4, features: int = 8, seed: int = 0, spread: float = 1.6):
    """Gaussian blobs: class c centred at 2 * e_c (overlapping a little at this spread)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, features, generator=g) * spread
    x[torch.arange(n), y] += 3.0
    return x, y


def trained(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: nn.Module,
            steps: int = 150, lr: float = 0.05) -> nn.Module:  # fmt: skip
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss(model(x), y).backward()
        optimizer.step()
    return model.eval()


def mlp(features: int = 8, outputs: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, outputs))


@pytest.fixture(scope="package")
def classifier():
    """(model, validation dataset) of a 4-class MLP that gets most, not all, samples right."""
    x, y = blobs(600)
    model = trained(mlp(), x[:400], y[:400], nn.CrossEntropyLoss())
    return model, TensorDataset(x[400:], y[400:])


@pytest.fixture(scope="package")
def regressor():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 5, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.3 * torch.randn(300, generator=g)
    model = trained(mlp(5, 1), x[:200], y[:200, None], nn.MSELoss(), steps=200, lr=0.02)
    return model, TensorDataset(x[200:], y[200:, None])
