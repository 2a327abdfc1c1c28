"""Shared synthetic data for fault cases: generated locally, seeded, standardized."""

import torch
from sklearn.datasets import make_friedman1
from torch.utils.data import TensorDataset


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sequences(n: int = 2400, length: int = 20, features: int = 4, seed: int = 0):
    """(train, val): x (N, T, F) standardized; y = which of 3 feature patterns dominates."""
    g = _gen(seed)
    x = torch.randn(n, length, features, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    x[:, :, 0] += (y == 1).float()[:, None] * 0.8  # class 1: feature 0 drifts up
    x[:, :, 1] += (y == 2).float()[:, None] * 0.8  # class 2: feature 1 drifts up
    x = (x - x.mean(dim=(0, 1))) / x.std(dim=(0, 1))
    cut = n * 4 // 5
    return TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])


def tokens(n: int = 2400, length: int = 16, vocab: int = 32, seed: int = 0):
    """(train, val): token ids (N, T); y = 1 when token 7 occurs more often than token 9."""
    g = _gen(seed)
    x = torch.randint(0, vocab, (n, length), generator=g)
    y = ((x == 7).sum(1) > (x == 9).sum(1)).long()
    cut = n * 4 // 5
    return TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])


def shapes(n: int = 600, size: int = 32, seed: int = 0):
    """(train, val): images (N, 1, S, S) with a bright square and a bright disc on noise;
    masks (N, S, S) in {0 background, 1 square, 2 disc}."""
    g = _gen(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.randn(n, 1, size, size, generator=g) * 0.3
    masks = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        r, c = torch.randint(2, size - 10, (2,), generator=g).tolist()
        masks[i, r : r + 8, c : c + 8] = 1
        cy, cx = torch.randint(6, size - 6, (2,), generator=g).tolist()
        masks[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = 2
    images[:, 0] += (masks > 0).float() * 1.5
    images = (images - images.mean()) / images.std()
    cut = n * 4 // 5
    return TensorDataset(images[:cut], masks[:cut]), TensorDataset(images[cut:], masks[cut:])


def friedman(n: int = 3000, seed: int = 0):
    """(train, val): Friedman #1 regression, x (N, 10), y (N, 1), both standardized."""
    x, y = make_friedman1(n_samples=n, noise=0.5, random_state=seed)
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.float32)[:, None]
    cut = n * 4 // 5
    x = (x - x[:cut].mean(0)) / x[:cut].std(0)
    y = (y - y[:cut].mean()) / y[:cut].std()
    return TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])
