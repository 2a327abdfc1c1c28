"""Small offline datasets for the broken-loop suite (no downloads)."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits


def digits(normalize: bool = True, n_train: int = 1400):
    """8x8 digits as (x_train (N, 64), y_train, x_val, y_val); pixels 0..16 unless normalized."""
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    if normalize:
        x = (x - x[:n_train].mean(0)) / (x[:n_train].std(0) + 1e-6)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def batches(x, y, batch_size: int, shuffle: bool = True, seed: int = 0):
    """Endless (x, y) minibatches, like iterating a DataLoader epoch after epoch."""
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(x), generator=g) if shuffle else torch.arange(len(x))
        for i in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]


def tokens(n: int = 20000, vocab: int = 32, seed: int = 0):
    """A synthetic token stream with learnable structure: noisy repeats of short motifs."""
    g = torch.Generator().manual_seed(seed)
    motifs = torch.randint(0, vocab, (16, 8), generator=g)
    picks = torch.randint(0, 16, (n // 8,), generator=g)
    stream = motifs[picks].reshape(-1)
    noise = torch.rand(stream.shape, generator=g) < 0.05
    return torch.where(noise, torch.randint(0, vocab, stream.shape, generator=g), stream)


def lm_batches(stream, batch_size: int, block: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, len(stream) - block - 1, (batch_size,), generator=g)
        x = torch.stack([stream[s : s + block] for s in starts])
        y = torch.stack([stream[s + 1 : s + block + 1] for s in starts])
        yield x, y


def validate(model, x, y, loss_fn=torch.nn.functional.cross_entropy):
    model.eval()
    with torch.no_grad():
        out = model(x)
        loss = loss_fn(out, y)
        acc = (out.argmax(1) == y).float().mean()
    model.train()
    return loss, acc
