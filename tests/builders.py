"""Small, fast setups for rule tests: healthy by default, broken by one argument."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw
from trainwise.stages.static import StaticStage


def blobs(n: int = 256, features: int = 16, classes: int = 4, seed: int = 0):
    """Standardized Gaussian blobs: x (n, features), y (n,) in 0..classes-1, balanced."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, features, generator=g) * 2
    y = torch.arange(n) % classes
    y = y[torch.randperm(n, generator=g)]
    x = centers[y] + torch.randn(n, features, generator=g)
    return (x - x.mean(0)) / x.std(0), y


def images(n: int = 128, channels: int = 3, size: int = 16, classes: int = 4, seed: int = 0):
    """Standardized random images (n, channels, size, size) and labels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=g), torch.arange(n) % classes


def mlp(features: int = 16, classes: int = 4, hidden: int = 32, tail: nn.Module | None = None):
    layers = [nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes)]
    return nn.Sequential(*layers, *([tail] if tail is not None else []))


def cnn(channels: int = 3, classes: int = 4):
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(8 * 16, classes),
    )


def setup(model, x, y, loss=None, val=None, **kw) -> tw.Setup:
    return tw.Setup(
        model=model,
        train=TensorDataset(x, y),
        val=TensorDataset(*val) if val is not None else None,
        loss=loss or nn.CrossEntropyLoss(),
        **kw,
    )


def static(s: tw.Setup) -> tw.Report:
    return tw.check(s, stages=[StaticStage()])


def loader(x, y, **kw) -> DataLoader:
    return DataLoader(TensorDataset(x, y), **kw)
